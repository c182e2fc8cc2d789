//! Files × nodes: when the panel watches several nodes, one table with a column per
//! node (how much of each file it holds) under a head per node (joined or not, how
//! much of everything it holds, its rates): the Syncthing device list and the
//! per-file picture in one place.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use torronto_core::Status;
use yew::prelude::*;

use super::listing::{arrange, pager, search_box, Listed, Listing};
use super::widgets::{peer_count, rates};
use crate::bridge::PeerFile;
use crate::util::percent;
use torronto_core::human_size;

/// What one watched node last said, and its rates (bytes per second).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Watched {
    pub(super) status: Rc<Status>,
    pub(super) down: f64,
    pub(super) up: f64,
}

/// The watched nodes that have answered, by URL.
#[derive(Clone, Debug, PartialEq, Default)]
pub(super) struct WatchedList(pub(super) BTreeMap<AttrValue, Watched>);

impl Reducible for WatchedList {
    /// A node's latest, or none once it is no longer watched (or answers no more).
    type Action = (AttrValue, Option<Watched>);

    fn reduce(self: Rc<Self>, (url, watched): Self::Action) -> Rc<Self> {
        if self.0.get(&url) == watched.as_ref() {
            return self;
        }
        let mut list = self.0.clone();
        match watched {
            Some(w) => list.insert(url, w),
            None => list.remove(&url),
        };
        Rc::new(WatchedList(list))
    }
}

impl WatchedList {
    /// The browser's files with the most complete count of their copies that the page
    /// has: its own node counts only the holders it is connected to, a joined watched
    /// node those it knows. Each participant counts a subset of the true holders, so
    /// the largest count of any of them is still no more than the truth, and the
    /// browser's table then agrees with the node cards.
    pub(super) fn counted(&self, files: &[PeerFile]) -> Vec<PeerFile> {
        let mut best: HashMap<(&str, u64), (f64, u32)> = HashMap::new();
        for w in self.0.values().filter(|w| w.status.joined) {
            for row in w.status.rows() {
                let Some(size) = row.size else { continue };
                let b = best.entry((row.name, size)).or_insert((0.0, 0));
                *b = (b.0.max(row.system), b.1.max(row.least));
            }
        }
        let mut files = files.to_vec();
        for f in &mut files {
            if let Some(&(system, least)) = best.get(&(f.name.as_str(), f.size)) {
                f.system = f.system.max(system);
                f.least = f.least.max(least);
            }
        }
        files
    }
}

/// One file across the nodes: the fraction each holds (None: the node does not know it).
struct Across {
    name: String,
    held: Vec<Option<f64>>,
}

impl Listed for Across {
    fn name(&self) -> &str {
        &self.name
    }

    fn number(&self, col: usize) -> f64 {
        self.held.get(col.wrapping_sub(1)).copied().flatten().unwrap_or(0.0)
    }
}

#[derive(Properties, PartialEq)]
pub(super) struct OverviewProps {
    pub(super) nodes: UseReducerHandle<WatchedList>,
}

/// The files × nodes table, shown once two or more watched nodes have answered.
#[function_component]
pub(super) fn Overview(props: &OverviewProps) -> Html {
    let listing = use_state(Listing::default);
    let nodes: Vec<&Watched> = props.nodes.0.values().collect();
    if nodes.len() < 2 {
        return html! {};
    }
    let mut names: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        for row in node.status.rows() {
            names.entry(row.name).or_insert_with(|| vec![None; nodes.len()])[i] = Some(row.local);
        }
    }
    let rows: Vec<Across> = names.into_iter().map(|(name, held)| Across { name: name.to_string(), held }).collect();
    let shown = arrange(&rows, &listing);
    html! {
        <section class="card overview" aria-label="Files on each watched node">
            <header class="card-head"><div class="title"><h2>{ "Files × nodes" }</h2></div></header>
            <ul class="devices">
                { for nodes.iter().map(|w| node_summary(w)) }
            </ul>
            { search_box(&listing, rows.len(), shown.matching) }
            <table class="files across">
                <thead><tr>
                    <th>{ "File" }</th>
                    { for nodes.iter().map(|w| html! { <th class="num" data-node={w.status.node.clone()}>{ w.status.node.clone() }</th> }) }
                </tr></thead>
                <tbody>
                { for shown.rows.iter().map(|r| html! {
                    <tr class="file" data-file={r.name.clone()}>
                        <td class="name" data-label="File" title={r.name.clone()}>{ r.name.clone() }</td>
                        { for r.held.iter().zip(&nodes).map(|(held, w)| {
                            let text = match held {
                                Some(f) if w.status.joined => percent(*f),
                                Some(_) => "not joined".to_string(),
                                None => "—".to_string(),
                            };
                            html! { <td class="num held" data-label={w.status.node.clone()} data-node={w.status.node.clone()}>{ text }</td> }
                        }) }
                    </tr>
                }) }
                </tbody>
            </table>
            { pager(&listing, shown.page, shown.pages, shown.matching) }
        </section>
    }
}

/// One node as a device card: joined or not, how much of the network's bytes it
/// holds, its peers and rates.
fn node_summary(w: &Watched) -> Html {
    let st = &w.status;
    let (mut have, mut total) = (0.0, 0.0);
    for row in st.rows() {
        let size = row.size.unwrap_or(0) as f64;
        have += row.local * size;
        total += size;
    }
    let done = if total > 0.0 { have / total } else { 1.0 };
    html! {
        <li class="device" data-node={st.node.clone()} data-done={done.to_string()}>
            <strong>{ st.node.clone() }</strong>
            <span>{ if st.joined { "joined" } else { "not joined" } }</span>
            <span>{ format!("{} of {} ({})", human_size(have as u64), human_size(total as u64), percent(done)) }</span>
            { peer_count(st) }
            { rates(w.down, w.up) }
        </li>
    }
}
