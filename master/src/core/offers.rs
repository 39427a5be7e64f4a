//! Offers: turning allocations into offers, their timeout, decline and rescind.

use super::state::sum;
use super::{Action, MasterCore, MasterError, MasterTimer, Out};
use agora_actors::transport::ConnId;
use agora_actors::{Filters, FrameworkId, Message, Offer, OfferId, Time, DEFAULT_REFUSE_SECONDS};
use agora_allocator::{Allocation, AllocatorEvent};
use std::collections::{BTreeMap, BTreeSet};
use tracing::{debug, warn};

/// Why an allocation cannot become an offer, and how long the allocator should hold off.
struct Unofferable {
    why: String,
    refuse_ms: Option<u64>,
}

impl MasterCore {
    pub(crate) fn on_allocations(&mut self, now: Time, allocs: Vec<Allocation>, out: &mut Out) {
        let mut batches: BTreeMap<FrameworkId, Vec<Offer>> = BTreeMap::new();
        for alloc in allocs {
            if alloc.resources.is_empty() {
                continue;
            }
            match self.check_offerable(&alloc) {
                Ok(()) => {
                    let offer = self.make_offer(now, alloc, out);
                    batches
                        .entry(offer.framework_id.clone())
                        .or_default()
                        .push(offer);
                }
                Err(u) => {
                    self.counters.allocations_unofferable += 1;
                    debug!(framework = %alloc.framework_id, agent = %alloc.agent_id, why = %u.why,
                        "allocation not offered; giving it back");
                    out.push(Action::Allocator(AllocatorEvent::Recover {
                        framework_id: alloc.framework_id,
                        agent_id: alloc.agent_id,
                        resources: alloc.resources,
                        refuse_ms: u.refuse_ms,
                    }));
                }
            }
        }
        let per_message = self.config.max_offers_per_message.max(1);
        for (fw, offers) in batches {
            for chunk in offers.chunks(per_message) {
                let msg = Message::Offers {
                    offers: chunk.to_vec(),
                };
                self.send_to_framework(&fw, msg, out);
            }
        }
    }

    fn check_offerable(&self, a: &Allocation) -> Result<(), Unofferable> {
        let gone = |why: String| Unofferable {
            why,
            refuse_ms: None,
        };
        // The allocator does not track connectivity or the master's own books, so it would
        // retry these at once: make it wait a little.
        let later = |why: String| Unofferable {
            why,
            refuse_ms: Some(self.config.unofferable_refuse_ms),
        };
        let agent = self
            .agents
            .get(&a.agent_id)
            .ok_or_else(|| gone("agent unknown".into()))?;
        let fw = self
            .frameworks
            .get(&a.framework_id)
            .ok_or_else(|| gone("framework unknown".into()))?;
        if fw.conn.is_none() {
            return Err(gone("framework inactive".into()));
        }
        if self.maintenance_mode(&a.agent_id).is_some() {
            // Decided before the allocator heard of the drain; it has deactivated it since.
            return Err(gone("agent in maintenance".into()));
        }
        if agent.conn.is_none() {
            return Err(later("agent disconnected".into()));
        }
        let taken = sum(
            "agent allocated",
            [
                self.agent_used(&a.agent_id),
                self.agent_offered(&a.agent_id),
            ]
            .iter(),
        );
        let fits = taken
            .checked_add(&a.resources)
            .map(|all| agent.total.contains(&all))
            .unwrap_or(false);
        if !fits {
            warn!(agent = %a.agent_id, framework = %a.framework_id, resources = %a.resources, taken = %taken,
                total = %agent.total, "allocator offered more than the agent has free; refusing it");
            return Err(later(format!(
                "{} does not fit next to {taken}",
                a.resources
            )));
        }
        Ok(())
    }

    fn make_offer(&mut self, now: Time, alloc: Allocation, out: &mut Out) -> Offer {
        let id = loop {
            let id = self.offer_ids.offer();
            if !self.offers.contains_key(&id) {
                break id;
            }
        };
        let (hostname, attributes, executor_ids) = match self.agents.get(&alloc.agent_id) {
            Some(a) => (
                a.hostname.clone(),
                a.attributes.clone(),
                a.executors
                    .keys()
                    .filter(|(f, _)| *f == alloc.framework_id)
                    .map(|(_, e)| e.clone())
                    .collect(),
            ),
            None => Default::default(),
        };
        let offer = Offer {
            id: id.clone(),
            framework_id: alloc.framework_id,
            agent_id: alloc.agent_id,
            hostname,
            resources: alloc.resources,
            attributes,
            executor_ids,
        };
        if let Some(a) = self.agents.get_mut(&offer.agent_id) {
            a.offers.insert(id.clone());
        }
        if let Some(f) = self.frameworks.get_mut(&offer.framework_id) {
            f.offers.insert(id.clone());
        }
        self.offers.insert(
            id.clone(),
            super::model::OfferEntry {
                offer: offer.clone(),
                made_at: now,
            },
        );
        self.counters.offers_made += 1;
        out.push(Action::SetTimer {
            timer: MasterTimer::OfferTimeout(id),
            at: now.plus_ms(self.config.offer_timeout_ms),
        });
        offer
    }

    /// Forgets an outstanding offer everywhere it is referenced.
    pub(crate) fn remove_offer(&mut self, id: &OfferId) -> Option<Offer> {
        let offer = self.offers.remove(id)?.offer;
        if let Some(a) = self.agents.get_mut(&offer.agent_id) {
            a.offers.remove(id);
        }
        if let Some(f) = self.frameworks.get_mut(&offer.framework_id) {
            f.offers.remove(id);
        }
        Some(offer)
    }

    /// Withdraws an offer. `notify`: tell its framework; `recover`: give it back to the
    /// allocator (not when a RemoveAgent/RemoveFramework follows, which releases it anyway).
    pub(crate) fn rescind_offer(
        &mut self,
        id: &OfferId,
        notify: bool,
        recover: bool,
        out: &mut Out,
    ) {
        self.rescind_offer_refusing(id, notify, recover, None, out)
    }

    /// `rescind_offer` that also withholds the resources from the framework for `refuse_ms`.
    fn rescind_offer_refusing(
        &mut self,
        id: &OfferId,
        notify: bool,
        recover: bool,
        refuse_ms: Option<u64>,
        out: &mut Out,
    ) {
        let Some(offer) = self.remove_offer(id) else {
            return;
        };
        self.counters.offers_rescinded += 1;
        if notify {
            let msg = Message::Rescind {
                offer_id: id.clone(),
            };
            self.send_to_framework(&offer.framework_id, msg, out);
        }
        if recover {
            out.push(Action::Allocator(AllocatorEvent::Recover {
                framework_id: offer.framework_id,
                agent_id: offer.agent_id,
                resources: offer.resources,
                refuse_ms,
            }));
        }
    }

    pub(crate) fn rescind_agent_offers(
        &mut self,
        agent: &agora_actors::AgentId,
        recover: bool,
        out: &mut Out,
    ) {
        let ids: Vec<OfferId> = self
            .agents
            .get(agent)
            .map(|a| a.offers.iter().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            self.rescind_offer(&id, true, recover, out);
        }
    }

    pub(crate) fn rescind_framework_offers(
        &mut self,
        fw: &FrameworkId,
        recover: bool,
        notify: bool,
        out: &mut Out,
    ) {
        let ids: Vec<OfferId> = self
            .frameworks
            .get(fw)
            .map(|f| f.offers.iter().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            self.rescind_offer(&id, notify, recover, out);
        }
    }

    pub(crate) fn offer_timed_out(&mut self, id: &OfferId, out: &mut Out) {
        if self.offers.contains_key(id) {
            debug!(offer = %id, "offer timed out; rescinding");
            // A framework that sat on an offer is treated as having declined it with the default
            // filter, so the resources go to someone else rather than straight back to it.
            let refuse_ms = (agora_actors::DEFAULT_REFUSE_SECONDS * 1000.0) as u64;
            self.rescind_offer_refusing(id, true, true, Some(refuse_ms), out);
        }
    }

    /// The refusal a call asks for; an invalid one is answered with an error and replaced by
    /// the default, so the rest of the call still takes effect.
    pub(crate) fn refuse_ms_or_default(
        &mut self,
        now: Time,
        conn: ConnId,
        filters: &Filters,
        out: &mut Out,
    ) -> u64 {
        match filters.refuse_ms() {
            Ok(ms) => ms,
            Err(why) => {
                self.reject(now, conn, MasterError::InvalidFilters(why), out);
                (DEFAULT_REFUSE_SECONDS * 1000.0) as u64
            }
        }
    }

    pub(crate) fn decline(
        &mut self,
        now: Time,
        conn: ConnId,
        fw: FrameworkId,
        offer_ids: Vec<OfferId>,
        filters: Filters,
        out: &mut Out,
    ) -> Result<(), MasterError> {
        if offer_ids.len() > self.config.max_offers_per_call {
            let why = format!(
                "{} offers in one call (limit {})",
                offer_ids.len(),
                self.config.max_offers_per_call
            );
            return Err(MasterError::BadRequest(why));
        }
        let refuse_ms = self.refuse_ms_or_default(now, conn, &filters, out);
        let mut seen = BTreeSet::new();
        let mut unknown = Vec::new();
        for id in offer_ids {
            if !seen.insert(id.clone()) {
                continue;
            }
            // Another framework's offer is reported as unknown: its existence is not ours to see.
            let owned = self
                .offers
                .get(&id)
                .is_some_and(|o| o.offer.framework_id == fw);
            let offer = if owned { self.remove_offer(&id) } else { None };
            match offer {
                Some(offer) => {
                    self.counters.offers_declined += 1;
                    out.push(Action::Allocator(AllocatorEvent::Recover {
                        framework_id: offer.framework_id,
                        agent_id: offer.agent_id,
                        resources: offer.resources,
                        refuse_ms: Some(refuse_ms),
                    }));
                }
                None => unknown.push(id.to_string()),
            }
        }
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(MasterError::UnknownOffers(unknown.join(", ")))
        }
    }
}
