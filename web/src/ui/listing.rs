//! Search, sort and pages for the file tables: a table holds at most [`PAGE`] rows in
//! the DOM however many files the network has.
//!
//! A table keeps a [`Listing`] in its state, passes its rows (anything [`Listed`]) to
//! [`arrange`], and draws [`search_box`], [`sort_header`] and [`pager`] around them.

use std::cmp::Ordering;

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::util::lowercase;

/// Rows per page.
pub(super) const PAGE: usize = 50;
/// Fewer files than this need no search box.
const SEARCH_FROM: usize = 6;

/// A row of a file table as the listing sees it.
pub(super) trait Listed {
    fn name(&self) -> &str;
    /// The number column `col` sorts by (column 0 sorts by name).
    fn number(&self, col: usize) -> f64;
}

/// A column's heading; `sortable: false` for the actions column.
pub(super) struct Column {
    pub(super) label: &'static str,
    pub(super) numeric: bool,
    pub(super) sortable: bool,
    pub(super) title: Option<&'static str>,
}

impl Column {
    /// A column sorted by text or a fraction drawn as a bar.
    pub(super) const fn text(label: &'static str) -> Column {
        Column { label, numeric: false, sortable: true, title: None }
    }

    /// A right-aligned number, explained by `title` if it needs it.
    pub(super) const fn number(label: &'static str, title: Option<&'static str>) -> Column {
        Column { label, numeric: true, sortable: true, title }
    }
}

/// The columns both file tables have.
pub(super) const FILE: Column = Column::text("File");
pub(super) const SIZE: Column = Column::number("Size", None);
pub(super) const IN_NETWORK: Column = Column::number("In network", Some("Chunks held by at least one participant"));
pub(super) const LEAST_COPIES: Column =
    Column::number("Least copies", Some("Fewest participants holding any one chunk"));
pub(super) const ACTIONS: Column = Column { label: "Actions", numeric: false, sortable: false, title: None };

/// What the person asked of a table: a search, a sort, a page.
#[derive(Clone, Debug, PartialEq, Default)]
pub(super) struct Listing {
    pub(super) query: String,
    /// The column sorted by and whether descending; `None` keeps the node's order.
    pub(super) sort: Option<(usize, bool)>,
    pub(super) page: usize,
}

/// What a table shows of its rows.
pub(super) struct Arranged<'a, R> {
    /// The current page's rows, at most [`PAGE`].
    pub(super) rows: Vec<&'a R>,
    /// Rows matching the search.
    pub(super) matching: usize,
    pub(super) pages: usize,
    /// The page shown (the one asked for, or the last one left).
    pub(super) page: usize,
}

/// The rows matching `listing`'s search, sorted as it says, cut to its page.
pub(super) fn arrange<'a, R: Listed>(rows: &'a [R], listing: &Listing) -> Arranged<'a, R> {
    let needle = lowercase(listing.query.trim());
    let mut found: Vec<&R> =
        rows.iter().filter(|r| needle.is_empty() || lowercase(r.name()).contains(&needle)).collect();
    if let Some((col, descending)) = listing.sort {
        let mut keyed: Vec<(SortKey, usize)> = found
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (if col == 0 { SortKey::Name(lowercase(r.name())) } else { SortKey::Number(r.number(col)) }, i)
            })
            .collect();
        sort_keys(&mut keyed, descending);
        found = keyed.into_iter().map(|(_, i)| found[i]).collect();
    }
    let matching = found.len();
    let pages = matching.div_ceil(PAGE).max(1);
    let page = listing.page.min(pages - 1);
    let rows = found.into_iter().skip(page * PAGE).take(PAGE).collect();
    Arranged { rows, matching, pages, page }
}

/// What a row is sorted by: its lower-cased name (column 0) or a number.
enum SortKey {
    Name(String),
    Number(f64),
}

/// Sorts rows by their keys, stably. Not generic over the row type: every table shares
/// one copy of the sort in the bundle, and each key is computed once, not per comparison.
fn sort_keys(keyed: &mut [(SortKey, usize)], descending: bool) {
    keyed.sort_by(|(a, _), (b, _)| {
        let order = match (a, b) {
            (SortKey::Name(a), SortKey::Name(b)) => a.cmp(b),
            (SortKey::Number(a), SortKey::Number(b)) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
            _ => Ordering::Equal,
        };
        if descending {
            order.reverse()
        } else {
            order
        }
    });
}

/// The search field above a table of `total` rows (none for a handful).
pub(super) fn search_box(listing: &UseStateHandle<Listing>, total: usize, matching: usize) -> Html {
    if total < SEARCH_FROM && listing.query.is_empty() {
        return html! {};
    }
    let on_input = {
        let listing = listing.clone();
        Callback::from(move |e: InputEvent| {
            if let Some(input) = e.target_dyn_into::<HtmlInputElement>() {
                listing.set(Listing { query: input.value(), page: 0, ..(*listing).clone() });
            }
        })
    };
    html! {
        <div class="listing-bar">
            <label class="search">
                <span>{ "Search files" }</span>
                <input type="search" value={listing.query.clone()} oninput={on_input} placeholder="part of a name" />
            </label>
            <span class="count" aria-live="polite">{ format!("{matching} of {total} files") }</span>
        </div>
    }
}

/// The table's head: each sortable heading is a button (click or Enter sorts by it,
/// again reverses); `aria-sort` says how the table is sorted.
pub(super) fn sort_header(listing: &UseStateHandle<Listing>, columns: &[Column]) -> Html {
    html! {
        <thead><tr>
            { for columns.iter().enumerate().map(|(i, c)| {
                let class = classes!(c.numeric.then_some("num"));
                if !c.sortable {
                    return html! { <th class={class}><span class="sr-only">{ c.label }</span></th> };
                }
                let state = listing.sort.filter(|(col, _)| *col == i).map(|(_, descending)| descending);
                let aria = match state {
                    Some(true) => "descending",
                    Some(false) => "ascending",
                    None => "none",
                };
                let arrow = match state {
                    Some(true) => "▼",
                    Some(false) => "▲",
                    None => "",
                };
                let on_click = {
                    let listing = listing.clone();
                    Callback::from(move |_: MouseEvent| {
                        // Numbers first by the largest, names from A; a second press reverses.
                        let descending = match state {
                            Some(d) => !d,
                            None => i != 0,
                        };
                        listing.set(Listing { sort: Some((i, descending)), page: 0, ..(*listing).clone() });
                    })
                };
                html! {
                    <th class={class} aria-sort={aria} title={c.title}>
                        <button type="button" class="sort" data-col={i.to_string()} onclick={on_click}>
                            { c.label }<span class="arrow" aria-hidden="true">{ arrow }</span>
                        </button>
                    </th>
                }
            }) }
        </tr></thead>
    }
}

/// Previous / next page, shown when the rows need more than one.
pub(super) fn pager(listing: &UseStateHandle<Listing>, page: usize, pages: usize, matching: usize) -> Html {
    if pages <= 1 {
        return html! {};
    }
    let go = |to: usize| {
        let listing = listing.clone();
        Callback::from(move |_: MouseEvent| listing.set(Listing { page: to, ..(*listing).clone() }))
    };
    let (first, last) = (page * PAGE + 1, ((page + 1) * PAGE).min(matching));
    html! {
        <nav class="pager" aria-label="File pages">
            <button type="button" class="prev" onclick={go(page.saturating_sub(1))} disabled={page == 0}>{ "‹ Previous" }</button>
            <span>{ format!("{first}–{last} of {matching} · page {} of {pages}", page + 1) }</span>
            <button type="button" class="next" onclick={go(page + 1)} disabled={page + 1 >= pages}>{ "Next ›" }</button>
        </nav>
    }
}
