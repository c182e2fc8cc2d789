//! torronto-ws-bridge: protocol frames over WebSockets (work in progress).
