//! Small presentational pieces shared by the panels.

use torronto_core::{human_size, Code, Status};
use yew::prelude::*;

use crate::util::rate;

/// What a reply code means for the person at the panel, and what to do about it.
pub fn advice(code: Code, action: &str) -> &'static str {
    match (code, action) {
        (Code::Ok, _) => "Done.",
        (Code::Connected, _) => "This node has already joined the network; nothing to do.",
        (Code::Disconnected, "Leave") => "This node is not joined (or is already leaving); nothing to do.",
        (Code::Disconnected, _) => "This node has not joined the network: press Join first.",
        (Code::FileExists, _) => {
            "A file of that name is already in the network (or being inserted): rename the file and insert it again."
        }
        (Code::FileMissing, "Remove") => "This node no longer knows that file: it may have been removed already.",
        (Code::FileMissing, _) => {
            "No readable regular file at that path on the node's machine: check the path (it is a path on the node's computer, not on this one)."
        }
        (Code::BadPermission, "Insert") => {
            "The node may not read that file, or the token was refused: check the file's permissions and the token."
        }
        (Code::BadPermission, _) => {
            "The node refused the token: open the control-panel address the node printed (it ends in #token=…) or paste that token, and connect again."
        }
        (Code::BadRequest, _) => "The node could not accept the request as sent: check the path or file name.",
        (Code::NoSpace, _) => {
            "The node has no room for that file (its disk, or its --max-store / --min-free limits): free space on the node first."
        }
    }
}

#[derive(Properties, PartialEq)]
pub struct BarProps {
    /// 0.0 to 1.0.
    pub value: f64,
    #[prop_or_default]
    pub label: AttrValue,
}

/// A progress bar with its label on top.
#[function_component]
pub fn Bar(props: &BarProps) -> Html {
    let pct = (props.value.clamp(0.0, 1.0) * 100.0).floor();
    let done = props.value >= 1.0;
    html! {
        <div class={classes!("bar", done.then_some("done"))} role="progressbar"
             aria-valuenow={pct.to_string()} aria-valuemin="0" aria-valuemax="100"
             aria-valuetext={(!props.label.is_empty()).then(|| props.label.clone())}>
            <div class="fill" style={format!("width: {pct}%")}></div>
            <span>{ props.label.clone() }</span>
        </div>
    }
}

#[derive(Properties, PartialEq)]
pub struct InsertingProps {
    /// What is happening to the file: "Inserting" (on a node), "Sharing" (from here).
    pub verb: AttrValue,
    pub file: AttrValue,
    pub done: u64,
    pub size: u64,
}

/// A file on its way into the network: its bytes copied and hashed so far.
#[function_component]
pub fn Inserting(props: &InsertingProps) -> Html {
    let value = if props.size == 0 { 1.0 } else { props.done as f64 / props.size as f64 };
    html! {
        <div class="inserting" data-file={props.file.clone()}>
            <span>{ format!("{} {}", props.verb, props.file) }</span>
            <Bar {value} label={format!("{} of {}", human_size(props.done), human_size(props.size))} />
        </div>
    }
}

/// How many peers a participant is linked to and, when gossip has told it of more, how
/// many participants the network has (its copy counts are over all of them).
pub fn peer_count(st: &Status) -> Html {
    let n = st.peers.len();
    let links = format!("{n} peer{}", if n == 1 { "" } else { "s" });
    let text = match st.participants {
        p if p > n + 1 => format!("{links} · {p} in the network"),
        _ => links,
    };
    html! { <span class="peer-count" data-participants={st.participants.to_string()}>{ text }</span> }
}

/// Chunks this participant fetched and served since it started.
pub fn chunk_counts(fetched: u64, served: u64) -> Html {
    html! { <span class="chunks">{ format!("{fetched} chunks fetched · {served} served") }</span> }
}

/// Bytes per second arriving and going out, in words and (rounded) in `data-down` and
/// `data-up`.
pub fn rates(down: f64, up: f64) -> Html {
    html! {
        <span class="rates" data-down={down.round().to_string()} data-up={up.round().to_string()}
            title="bytes per second arriving (↓) and going out (↑)">
            { format!("↓ {} · ↑ {}", rate(down), rate(up)) }</span>
    }
}

/// How long a notice stays before it goes by itself: good news briefly, trouble longer.
const OK_MS: u32 = 8_000;
const ERR_MS: u32 = 30_000;

#[derive(Properties, PartialEq)]
pub struct NoticeProps {
    pub ok: bool,
    /// The reply code behind it (shown small when something went wrong, and in
    /// `data-code`).
    #[prop_or_default]
    pub code: Option<Code>,
    /// What happened, in plain words.
    pub title: AttrValue,
    #[prop_or_default]
    pub children: Html,
    /// Dismissed by its × or when it expires; without it the notice stays (a state,
    /// not news).
    #[prop_or_default]
    pub on_dismiss: Option<Callback<()>>,
}

/// A notice: what happened, what to do, a × to dismiss it; it expires by itself. Give
/// each notice its own `key` so a new one starts its own time.
#[function_component]
pub fn Notice(props: &NoticeProps) -> Html {
    {
        let on_dismiss = props.on_dismiss.clone();
        let ms = if props.ok { OK_MS } else { ERR_MS };
        use_effect_with((), move |_| {
            let timer = on_dismiss.map(|cb| gloo_timers::callback::Timeout::new(ms, move || cb.emit(())));
            move || drop(timer)
        });
    }
    let close = props.on_dismiss.clone().map(|cb| {
        html! {
            <button class="close" type="button" aria-label="Dismiss this notice" title="Dismiss"
                onclick={Callback::from(move |_: MouseEvent| cb.emit(()))}>{ "×" }</button>
        }
    });
    html! {
        <div class={classes!("notice", if props.ok { "ok" } else { "err" })} data-code={props.code.map(|c| c.name())}>
            <strong>{ props.title.clone() }</strong>
            { props.children.clone() }
            if let Some(code) = props.code.filter(|c| *c != Code::Ok) { <code class="code">{ code.name() }</code> }
            { for close }
        </div>
    }
}

#[derive(Properties, PartialEq)]
pub struct ReplyProps {
    pub action: AttrValue,
    pub code: Code,
    #[prop_or_default]
    pub reason: Option<AttrValue>,
    #[prop_or_default]
    pub extra: Option<AttrValue>,
    #[prop_or_default]
    pub on_dismiss: Option<Callback<()>>,
}

/// A node's reply to an action, in plain words, with what to do when it failed.
#[function_component]
pub fn ReplyNotice(props: &ReplyProps) -> Html {
    let ok = props.code == Code::Ok;
    let title = match (props.code, props.action.as_str()) {
        (Code::Ok, "Join") => "Joined the network.".to_string(),
        (Code::Ok, "Leave") => "Left the network.".to_string(),
        (Code::Ok, "Insert") => "Inserted: the file is in the network.".to_string(),
        (Code::Ok, "Remove") => "Removed from every node.".to_string(),
        (Code::Ok, action) => format!("{action} done."),
        (_, action) => format!("{action} not done."),
    };
    html! {
        <Notice {ok} code={props.code} title={title} on_dismiss={props.on_dismiss.clone()}>
            if !ok { <span>{ advice(props.code, &props.action) }</span> }
            if let Some(reason) = &props.reason { <span class="reason">{ reason.clone() }</span> }
            if let Some(extra) = &props.extra { <span class="reason">{ extra.clone() }</span> }
        </Notice>
    }
}

/// The colour class of a replication level in chunk maps and tables.
pub fn level_class(replication: u32) -> &'static str {
    match replication {
        0 => "r0",
        1 => "r1",
        2 => "r2",
        3 => "r3",
        _ => "r4",
    }
}

#[derive(Properties, PartialEq)]
pub struct CopyBadgeProps {
    pub copies: u32,
}

/// How many participants hold a file's least replicated chunk: the number on a badge
/// coloured by level, its meaning in words for the title and screen readers.
#[function_component]
pub fn CopyBadge(props: &CopyBadgeProps) -> Html {
    let n = props.copies;
    let words = match n {
        0 => "a chunk is missing everywhere".to_string(),
        1 => "1 copy".to_string(),
        n => format!("{n} copies"),
    };
    html! { <span class={classes!("level", level_class(n))} title={words.clone()} aria-label={words}>{ n }</span> }
}

/// The copies of a file as a participant sees them, or "not joined" when it is not
/// part of the network: a node that left counts only itself, which is no alarm.
pub fn copies_cell(joined: bool, copies: u32) -> Html {
    if joined {
        html! { <CopyBadge copies={copies} /> }
    } else {
        html! { <span class="muted not-joined" title="not part of the network: its copies are not counted">{ "not joined" }</span> }
    }
}

/// A progress bar's words: how much is here and, while it arrives, how fast and how
/// long the rest takes at that rate.
pub fn transfer_label(done: f64, size: u64, rate: Option<f64>) -> AttrValue {
    let pct = crate::util::percent(done);
    match rate.filter(|r| *r > 0.0 && done < 1.0) {
        Some(r) => {
            let left = size as f64 * (1.0 - done.clamp(0.0, 1.0)) / r;
            format!("{pct} · {} · {} left", crate::util::rate(r), crate::util::duration(left)).into()
        }
        None => pct.into(),
    }
}
