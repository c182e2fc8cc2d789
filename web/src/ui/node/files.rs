//! A node's files: the status table, and the chunk map of the file selected in it.

use std::collections::HashMap;
use std::rc::Rc;

use torronto_core::{ChunkMap, FileRow, Status};
use yew::prelude::*;

use crate::ui::listing::{
    arrange, pager, search_box, sort_header, Column, Listed, Listing, ACTIONS, FILE, IN_NETWORK, LEAST_COPIES, SIZE,
};
use crate::ui::widgets::{copies_cell, level_class, transfer_label, Bar};
use crate::util::percent;
use torronto_core::human_size;

#[derive(Properties, PartialEq)]
pub(super) struct FileTableProps {
    pub(super) status: Rc<Status>,
    pub(super) selected: Option<String>,
    pub(super) on_select: Callback<String>,
    /// Removes the named file from the network (after the person confirmed).
    pub(super) on_delete: Callback<String>,
    /// Whether an action may be sent now (the session is open and none is waiting).
    pub(super) can_act: bool,
    /// Whether the node is part of the network: if not, copies read "not joined".
    pub(super) joined: bool,
    /// Bytes per second arriving for each file being fetched, from successive answers.
    pub(super) rates: Rc<HashMap<String, f64>>,
}

/// The node table's columns; [`Listed::number`] of a [`FileRow`] follows their order.
const COLUMNS: [Column; 7] = [
    FILE,
    SIZE,
    Column::text("On this node"),
    IN_NETWORK,
    LEAST_COPIES,
    Column::number("Avg copies", Some("Average participants holding a chunk")),
    ACTIONS,
];

impl Listed for FileRow<'_> {
    fn name(&self) -> &str {
        self.name
    }

    fn number(&self, col: usize) -> f64 {
        match col {
            1 => self.size.unwrap_or(0) as f64,
            2 => self.local,
            3 => self.system,
            4 => f64::from(self.least),
            _ => self.average,
        }
    }
}

/// The status table: one row per file (a page of them), searchable and sortable; the
/// name (a button) opens the file's chunk map, as a click on the row does. Remove asks
/// for a confirmation in the row first: it deletes the file on every node.
#[function_component]
pub(super) fn FileTable(props: &FileTableProps) -> Html {
    let confirming = use_state(|| None::<String>);
    let listing = use_state(Listing::default);
    let st = &props.status;
    if st.files.is_empty() {
        return html! { <p class="empty">{ "No files yet. Insert one by path above, or share one from this browser below." }</p> };
    }
    let rows: Vec<FileRow<'_>> = st.rows().collect();
    let shown = arrange(&rows, &listing);
    html! {
        <>
        { search_box(&listing, rows.len(), shown.matching) }
        <table class="files">
            { sort_header(&listing, &COLUMNS) }
            <tbody>
            { for shown.rows.iter().map(|row| {
                let (name, local, system, least, avg) = (row.name.to_string(), row.local, row.system, row.least, row.average);
                let size = row.size.unwrap_or(0);
                let on_click = {
                    let cb = props.on_select.clone();
                    let name = name.clone();
                    Callback::from(move |_: MouseEvent| cb.emit(name.clone()))
                };
                let selected = props.selected.as_deref() == Some(name.as_str());
                let remove = remove_cell(&name, &confirming, &props.on_delete, props.can_act);
                html! {
                    <tr class={classes!("file", selected.then_some("selected"))} onclick={on_click}
                        data-file={name.clone()} data-local={local.to_string()} data-least={least.to_string()}>
                        <td class="name" data-label="File">
                            <button type="button" class="name" title={format!("{name}: show its chunk map")}
                                aria-expanded={selected.to_string()}>{ name.clone() }</button>
                        </td>
                        <td class="num" data-label="Size">{ human_size(size) }</td>
                        <td class="progress" data-label="On this node">
                            <Bar value={local} label={transfer_label(local, size, props.rates.get(&name).copied())} /></td>
                        <td class="num" data-label="In network">{ if props.joined { percent(system) } else { "—".into() } }</td>
                        <td class="num copies" data-label="Least copies">{ copies_cell(props.joined, least) }</td>
                        <td class="num" data-label="Avg copies">{ if props.joined { format!("{avg:.2}") } else { "—".into() } }</td>
                        <td class="act">{ remove }</td>
                    </tr>
                }
            }) }
            </tbody>
        </table>
        { pager(&listing, shown.page, shown.pages, shown.matching) }
        </>
    }
}

/// The Remove button of file `name`, or, once pressed, the question whether to remove
/// it from every node. Clicks here do not select the row.
fn remove_cell(
    name: &str,
    confirming: &UseStateHandle<Option<String>>,
    on_delete: &Callback<String>,
    can_act: bool,
) -> Html {
    let click = |f: Box<dyn Fn()>| {
        Callback::from(move |e: MouseEvent| {
            e.stop_propagation();
            f();
        })
    };
    if confirming.as_deref() != Some(name) {
        let (confirming, name) = (confirming.clone(), name.to_string());
        let ask = click(Box::new(move || confirming.set(Some(name.clone()))));
        return html! {
            <button class="remove ghost" title="Delete this file on every node of the network" onclick={ask} disabled={!can_act}>{ "Remove" }</button>
        };
    }
    let cancel = {
        let confirming = confirming.clone();
        click(Box::new(move || confirming.set(None)))
    };
    let confirm = {
        let (confirming, on_delete, name) = (confirming.clone(), on_delete.clone(), name.to_string());
        click(Box::new(move || {
            confirming.set(None);
            on_delete.emit(name.clone());
        }))
    };
    html! {
        <span class="confirm-remove">
            <span>{ "Delete it on every node?" }</span>
            <button class="confirm danger" onclick={confirm} disabled={!can_act}>{ "Remove everywhere" }</button>
            <button class="cancel ghost" onclick={cancel}>{ "Cancel" }</button>
        </span>
    }
}

#[derive(Properties, PartialEq)]
pub(super) struct ChunkMapProps {
    pub(super) map: ChunkMap,
}

/// The legend's levels: class, words.
const LEVELS: [(&str, &str); 5] =
    [("r0", "missing"), ("r1", "1 copy"), ("r2", "2 copies"), ("r3", "3 copies"), ("r4", "4 or more")];

/// Chunks drawn by how many participants hold them (each level a colour and a
/// pattern), a dot on those held here; the legend counts the cells of each level.
#[function_component]
pub(super) fn ChunkMapView(props: &ChunkMapProps) -> Html {
    let m = &props.map;
    let per = if m.bucket_size > 1 {
        format!(", {} chunks per cell (the least replicated shown)", m.bucket_size)
    } else {
        String::new()
    };
    let mut counts = [0usize; 5];
    for &r in &m.buckets {
        counts[(r as usize).min(4)] += 1;
    }
    let here = m.local.iter().filter(|h| **h).count();
    let summary = LEVELS
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|((_, words), n)| format!("{words}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let unit = if m.bucket_size > 1 { "cells" } else { "chunks" };
    html! {
        <div class="chunkmap" data-file={m.file.clone()} role="region" aria-label={format!("Chunk map of {}", m.file)}>
            <div class="chunkmap-head">
                <strong>{ format!("Chunk map of {}", m.file) }</strong>
                <span>{ format!("{} chunks{per}", m.chunks) }</span>
            </div>
            <div class="cells" role="img" aria-label={format!("{unit} by copies — {summary}; held by this node: {here}")}>
                { for m.buckets.iter().enumerate().map(|(b, &r)| {
                    let first = b as u32 * m.bucket_size;
                    let last = (first + m.bucket_size).min(m.chunks).saturating_sub(1);
                    let here = m.local.get(b).copied().unwrap_or(false);
                    let range = if first == last { format!("chunk {first}") } else { format!("chunks {first}–{last}") };
                    let title = format!("{range}: {r} cop{}{}", if r == 1 { "y" } else { "ies" }, if here { ", held by this node" } else { "" });
                    html! { <i class={classes!("cell", level_class(r), here.then_some("here"))} title={title}></i> }
                }) }
            </div>
            <div class="legend">
                { for LEVELS.iter().zip(counts).map(|((class, words), n)| html! {
                    <span data-level={*class}><i class={classes!("cell", *class)}></i>{ *words }<span class="count">{ n }</span></span>
                }) }
                <span data-level="here"><i class="cell r4 here"></i>{ "held by this node" }<span class="count">{ here }</span></span>
            </div>
        </div>
    }
}
