//! Bandwidth limits: the driver enforces them on chunk bodies; the node keeps them so
//! that a control client can change them (Limit) and read them (Limit, Query).

use super::{ConnId, Event, Node};
use crate::wire::{Code, RateLimits, Reply};

impl Node {
    /// The limits the driver starts with (its flags or config file).
    pub fn set_limits(&mut self, limits: RateLimits) {
        self.limits = limits;
    }

    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// A control client's Limit: changes the limits given and answers with those in force.
    pub(super) fn limit(&mut self, conn: ConnId, upload: Option<u64>, download: Option<u64>) {
        let old = self.limits;
        self.limits = RateLimits { upload: upload.unwrap_or(old.upload), download: download.unwrap_or(old.download) };
        if self.limits != old {
            self.events.push_back(Event::LimitsChanged(self.limits));
        }
        self.reply(conn, Reply { limits: Some(self.limits), ..Reply::code(Code::Ok) });
    }
}
