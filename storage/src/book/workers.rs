//! The worker registry and auction → worker assignment: `RegisterWorker`,
//! `RemoveWorker`, `AssignAuction`, and the `hosted` index behind capacity checks.
//!
//! Only non-final auctions count against a worker's `max_auctions`. Lowering
//! `max_auctions` below the current load is allowed: it only stops new assignments.

use super::{check_not_final, AuctionBook};
use crate::command::{Rejection, Response};
use crate::types::{AuctionId, EventKind, NodeId, TimestampMs, Worker};

impl AuctionBook {
    /// Upsert: the first registration sets `registered_at_ms`, later ones keep it.
    pub(super) fn register_worker(
        &mut self,
        node_id: NodeId,
        addr: &str,
        udp_addr: &str,
        max_auctions: u32,
        now: TimestampMs,
    ) -> Response {
        let registered_at_ms = self.workers.get(&node_id).map_or(now, |worker| worker.registered_at_ms);
        self.workers.insert(
            node_id,
            Worker {
                node_id,
                addr: addr.to_string(),
                udp_addr: udp_addr.to_string(),
                max_auctions,
                registered_at_ms,
            },
        );
        Response::WorkerRegistered { node_id }
    }

    /// Unregisters a worker; its non-final auctions are left without a worker (no
    /// events: the response lists them and a later `AssignAuction` announces the new
    /// host with a `Reassigned` event).
    pub(super) fn remove_worker(&mut self, node_id: NodeId) -> Result<Response, Rejection> {
        if self.workers.remove(&node_id).is_none() {
            return Err(Rejection::UnknownWorker { node_id });
        }
        let orphaned: Vec<AuctionId> = self.hosted.remove(&node_id).unwrap_or_default().into_iter().collect();
        for id in &orphaned {
            if let Some(auction) = self.auctions.get_mut(id) {
                auction.worker = None;
            }
        }
        Ok(Response::WorkerRemoved { node_id, orphaned })
    }

    pub(super) fn assign_auction(
        &mut self,
        id: AuctionId,
        node_id: NodeId,
        now: TimestampMs,
    ) -> Result<Response, Rejection> {
        let auction = self.get(id)?;
        check_not_final(auction)?;
        if !self.workers.contains_key(&node_id) {
            return Err(Rejection::UnknownWorker { node_id });
        }
        if auction.worker == Some(node_id) {
            return Ok(Response::AuctionAssigned {
                auction_id: id,
                worker: node_id,
                events: Vec::new(),
            });
        }
        self.check_capacity(node_id)?;

        let previous = auction.worker;
        if let Some(previous) = previous {
            self.unhost(previous, id);
        }
        self.hosted.entry(node_id).or_default().insert(id);
        if let Some(auction) = self.auctions.get_mut(&id) {
            auction.worker = Some(node_id);
        }
        let mut events = Vec::new();
        self.emit_into(&mut events, id, now, EventKind::Reassigned { worker: Some(node_id) });
        Ok(Response::AuctionAssigned {
            auction_id: id,
            worker: node_id,
            events,
        })
    }

    /// `UnknownWorker` unless registered, `NoCapacity` unless it can host one more.
    pub(super) fn check_capacity(&self, node_id: NodeId) -> Result<(), Rejection> {
        let worker = self.workers.get(&node_id).ok_or(Rejection::UnknownWorker { node_id })?;
        let hosted = self.hosted.get(&node_id).map_or(0, |ids| ids.len());
        if hosted as u64 >= u64::from(worker.max_auctions) {
            return Err(Rejection::NoCapacity { node_id });
        }
        Ok(())
    }

    /// Drops `id` from `node_id`'s hosted set (and the set once empty).
    pub(super) fn unhost(&mut self, node_id: NodeId, id: AuctionId) {
        if let Some(ids) = self.hosted.get_mut(&node_id) {
            ids.remove(&id);
            if ids.is_empty() {
                self.hosted.remove(&node_id);
            }
        }
    }
}
