//! The simulated network: piece transfers as fluid flows that share each node's uplink and
//! downlink.
//!
//! Two ways to share a link, see [`Sharing`]. Rates change only when a flow starts or ends.

use std::collections::HashMap;

use super::events::Time;
use crate::fetch::uploads::Slot;

pub(super) type FlowId = usize;

/// How flows share the links at their two ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// A flow gets an equal share of its source's uplink and of its requester's downlink,
    /// the smaller of the two. A share one flow cannot use because its other end is slower is
    /// not handed to the others, so no flow is faster than under max-min sharing; each change
    /// costs only the few flows at the two nodes it touches.
    Equal,
    /// Max-min fairness (progressive filling over every link), what TCP flows converge to.
    /// Every change recomputes every flow: for small fleets, to check the equal shares by.
    MaxMin,
}

/// One piece on its way from a source to a requester.
struct Flow {
    from: usize,
    to: usize,
    /// The request it answers, for the caller.
    req: u64,
    len: f64,
    done: f64,
    /// Bytes per nanosecond.
    rate: f64,
    since: Time,
    /// Changes whenever the completion time does, so stale completion events are ignored.
    version: u64,
    /// The piece cannot be complete before its source holds all of it (the owner's live edge).
    ready_at: Time,
    /// The upload slot of the source, given back when the flow ends.
    slot: Slot,
}

pub(super) struct Net {
    sharing: Sharing,
    /// Bytes per nanosecond, per node.
    up: Vec<f64>,
    down: Vec<f64>,
    flows: Vec<Option<Flow>>,
    free: Vec<FlowId>,
    ups: Vec<Vec<FlowId>>,
    downs: Vec<Vec<FlowId>>,
    /// Bytes each node has sent, counting transfers cancelled midway.
    pub(super) uploaded: Vec<f64>,
    versions: u64,
}

/// When a flow completes, unless its rate changes first.
pub(super) struct Completion {
    pub flow: FlowId,
    pub version: u64,
    pub at: Time,
}

impl Net {
    pub(super) fn new(sharing: Sharing, up: Vec<f64>, down: Vec<f64>) -> Self {
        let n = up.len();
        Self {
            sharing,
            up,
            down,
            flows: Vec::new(),
            free: Vec::new(),
            ups: vec![Vec::new(); n],
            downs: vec![Vec::new(); n],
            uploaded: vec![0.0; n],
            versions: 0,
        }
    }

    pub(super) fn down_rate(&self, node: usize) -> f64 {
        self.down[node]
    }

    /// Transfers the node is sending now.
    pub(super) fn uploads(&self, node: usize) -> usize {
        self.ups[node].len()
    }

    /// Starts a transfer of `len` bytes; returns the completion times that changed.
    pub(super) fn start(
        &mut self,
        now: Time,
        (from, to): (usize, usize),
        req: u64,
        len: u64,
        ready_at: Time,
        slot: Slot,
    ) -> (FlowId, Vec<Completion>) {
        let flow = Flow {
            from,
            to,
            req,
            len: len as f64,
            done: 0.0,
            rate: 0.0,
            since: now,
            version: 0,
            ready_at,
            slot,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.flows[id] = Some(flow);
                id
            }
            None => {
                self.flows.push(Some(flow));
                self.flows.len() - 1
            }
        };
        self.ups[from].push(id);
        self.downs[to].push(id);
        (id, self.reshare(now, from, to))
    }

    /// Ends a transfer, finished or cancelled; returns its request and the completion times of
    /// the flows that share its links, which changed.
    /// The source's upload slot comes back with it, for the caller to end on its clock.
    pub(super) fn end(&mut self, now: Time, id: FlowId) -> (u64, Slot, Vec<Completion>) {
        self.advance(now, id);
        let flow = self.flows[id].take().expect("a live flow");
        self.free.push(id);
        self.ups[flow.from].retain(|&f| f != id);
        self.downs[flow.to].retain(|&f| f != id);
        (flow.req, flow.slot, self.reshare(now, flow.from, flow.to))
    }

    /// Whether `version` is still the flow's current one.
    pub(super) fn is_current(&self, id: FlowId, version: u64) -> bool {
        self.flows.get(id).and_then(Option::as_ref).is_some_and(|f| f.version == version)
    }

    /// New rates after a flow started or ended between `from` and `to`.
    fn reshare(&mut self, now: Time, from: usize, to: usize) -> Vec<Completion> {
        match self.sharing {
            Sharing::Equal => {
                let mut touched: Vec<FlowId> = self.ups[from].clone();
                touched.extend(self.downs[to].iter().filter(|f| !self.ups[from].contains(f)));
                touched.into_iter().map(|id| self.rerate(now, id, self.equal_share(id))).collect()
            }
            Sharing::MaxMin => {
                let changed: Vec<(FlowId, f64)> = self
                    .max_min()
                    .into_iter()
                    .filter(|&(id, rate)| self.flows[id].as_ref().is_some_and(|f| f.rate != rate))
                    .collect();
                changed.into_iter().map(|(id, rate)| self.rerate(now, id, rate)).collect()
            }
        }
    }

    fn equal_share(&self, id: FlowId) -> f64 {
        let flow = self.flows[id].as_ref().expect("a live flow");
        let ups = self.ups[flow.from].len() as f64;
        (self.up[flow.from] / ups).min(self.down[flow.to] / self.downs[flow.to].len() as f64)
    }

    /// Progressive filling: the link whose remaining capacity per unfixed flow is smallest
    /// fixes its flows at that rate, until every flow has one.
    fn max_min(&self) -> Vec<(FlowId, f64)> {
        let live: Vec<FlowId> =
            (0..self.flows.len()).filter(|&i| self.flows[i].is_some()).collect();
        let ends = |id: FlowId| {
            let flow = self.flows[id].as_ref().expect("a live flow");
            (flow.from, flow.to)
        };
        let (mut up, mut down) = (self.up.clone(), self.down.clone());
        let mut n_up: Vec<usize> = self.ups.iter().map(Vec::len).collect();
        let mut n_down: Vec<usize> = self.downs.iter().map(Vec::len).collect();
        let mut rate: HashMap<FlowId, f64> = HashMap::new();
        while rate.len() < live.len() {
            let best_up =
                (0..up.len()).filter(|&n| n_up[n] > 0).map(|n| (up[n] / n_up[n] as f64, n));
            let best_down =
                (0..down.len()).filter(|&n| n_down[n] > 0).map(|n| (down[n] / n_down[n] as f64, n));
            let (share, uplink, node) = best_up
                .map(|(s, n)| (s, true, n))
                .chain(best_down.map(|(s, n)| (s, false, n)))
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .expect("an unfixed flow has links");
            // Rounding must not leave a link with less than nothing.
            let share = share.max(f64::MIN_POSITIVE);
            let on_link = if uplink { &self.ups[node] } else { &self.downs[node] };
            for &id in on_link {
                if rate.contains_key(&id) {
                    continue;
                }
                rate.insert(id, share);
                let (from, to) = ends(id);
                up[from] -= share;
                down[to] -= share;
                n_up[from] -= 1;
                n_down[to] -= 1;
            }
        }
        rate.into_iter().collect()
    }

    fn rerate(&mut self, now: Time, id: FlowId, rate: f64) -> Completion {
        self.advance(now, id);
        self.versions += 1;
        let version = self.versions;
        let flow = self.flows[id].as_mut().expect("a live flow");
        flow.rate = rate;
        flow.version = version;
        let left = (flow.len - flow.done).max(0.0);
        let at = (now + (left / flow.rate).ceil() as Time).max(flow.ready_at);
        Completion { flow: id, version, at }
    }

    /// Counts the bytes sent since the flow's rate was last set.
    fn advance(&mut self, now: Time, id: FlowId) {
        let flow = self.flows[id].as_mut().expect("a live flow");
        let sent = (flow.rate * now.saturating_sub(flow.since) as f64).min(flow.len - flow.done);
        flow.done += sent;
        flow.since = now;
        self.uploaded[flow.from] += sent;
    }
}
