//! Who may control the node: every control request carries the token, on every
//! connection (loopback too, since every user of the machine can reach it). Wrong
//! tokens are throttled: each is answered only after a delay that doubles with every
//! wrong token the node has seen lately, whatever connection it came on, and a
//! connection that sends `token_attempts` of them is closed once answered.

use super::{control_token_matches, ConnId, Event, Millis, NetCommand, Node, Timer};
use crate::wire::{Code, Reply};

/// What a refused control client is told.
const WRONG_TOKEN: &str = "wrong or missing control token: send the node's token as \"Token\" \
                           (its owner finds it in DIR/.torronto/token)";

/// Wrong tokens seen lately, node-wide.
#[derive(Debug, Default)]
pub(super) struct Guesses {
    /// Wrong tokens since the last quiet spell.
    recent: u32,
    last: Option<Millis>,
    /// When the latest refusal is answered; the next one comes after it, so that
    /// guesses spread over many connections are answered one at a time.
    next_answer: Millis,
}

impl Node {
    /// Whether a control request on `conn` carrying `token` may go ahead. If not, its
    /// refusal is scheduled ([`Timer::TokenRefusal`]) and nothing else is done now.
    pub(super) fn authorise_control(&mut self, now: Millis, conn: ConnId, token: Option<&str>) -> bool {
        let tuning = &self.config.tuning;
        let Some(state) = self.conns.get(&conn) else {
            return false;
        };
        // Past its last attempt the connection is being closed: nothing more is looked
        // at, not even a right token, so piling guesses onto one connection gains nothing.
        if state.token_failures >= tuning.token_attempts {
            return false;
        }
        if control_token_matches(self.config.token.as_deref(), token) {
            return true;
        }
        let state = self.conns.get_mut(&conn).expect("looked up above");
        state.token_failures += 1;
        let attempt = state.token_failures;
        let guesses = &mut self.guesses;
        if guesses.last.is_none_or(|last| now.saturating_sub(last) >= tuning.token_quiet) {
            guesses.recent = 0;
            self.events.push_back(Event::TokenRefused { conn });
        }
        guesses.recent += 1;
        guesses.last = Some(now);
        let doublings = (guesses.recent - 1).min(32);
        let delay = tuning.token_delay.saturating_mul(1 << doublings).min(tuning.token_delay_max);
        let at = guesses.next_answer.max(now) + delay;
        guesses.next_answer = at;
        self.timers.set(Timer::TokenRefusal { conn, attempt }, at);
        false
    }

    /// Answers a wrong token whose delay is over; closes the connection at its last attempt.
    pub(super) fn token_refusal_due(&mut self, conn: ConnId, attempt: u32) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.reply(conn, Reply { reason: Some(WRONG_TOKEN.into()), ..Reply::code(Code::BadPermission) });
        if attempt >= self.config.tuning.token_attempts {
            self.net.push_back(NetCommand::Close(conn));
        }
    }
}
