//! torronto-web: the browser app (work in progress).
