//! systemd's notify protocol (`sd_notify(3)`, through the `sd-notify` crate): readiness,
//! the watchdog, status lines and stopping, for a `Type=notify` unit
//! (`deploy/gavel.service`).
//!
//! systemd passes the notify socket in `NOTIFY_SOCKET` and, with `WatchdogSec=`, the
//! watchdog timeout in `WATCHDOG_USEC` (and `WATCHDOG_PID`). Without `NOTIFY_SOCKET`
//! nothing is sent and [`run`] returns at once.
//!
//! - `READY=1` once, the first time the node is ready: the condition `GET /ready`
//!   answers 200 for (`gavel_api::cluster::readiness`), checked every
//!   [`READY_POLL_MS`].
//! - `WATCHDOG=1` every `WATCHDOG_USEC / 2`, only while the Raft core is alive
//!   ([`core_alive`]): its metrics say it runs *and* it answers a request within half a
//!   tick. A core that stopped (a full disk, a storage error) or hangs gets no pings, and
//!   systemd kills and restarts the node once `WatchdogSec` has passed. A node that is
//!   merely not ready (no quorum, catching up) keeps pinging: restarting it would not help.
//! - Until `READY=1`, each tick with a live core also sends `EXTEND_TIMEOUT_USEC`, so a
//!   node waiting for its peers (a cluster without quorum, a large snapshot on its way)
//!   stays "activating" past `TimeoutStartSec` instead of being killed, while a start-up
//!   whose core hangs still times out.
//! - `STATUS=` at every tick: role, leader, term, applied index (`systemctl status`).
//! - `STOPPING=1` when a signal starts the shutdown ([`stopping`]).

use openraft::async_runtime::watch::WatchReceiver as _;
use std::future::Future;
use std::time::Duration;

use gavel_api::AppState;
use gavel_raft::Raft;
use openraft::ServerState;
use sd_notify::NotifyState;
use tokio::sync::watch;

/// How often readiness is checked until `READY=1` is sent.
pub const READY_POLL_MS: u64 = 100;
/// Ticks (status, start-timeout extension) when systemd set no watchdog.
pub const TICK_WITHOUT_WATCHDOG_MS: u64 = 5_000;
/// A start-timeout extension covers this many ticks, so one late tick is not fatal.
const EXTEND_TICKS: u32 = 3;

/// Whether systemd asked for notifications.
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// Sends `STOPPING=1`: the shutdown has begun.
pub fn stopping() {
    if enabled() {
        send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }
}

/// The time between two ticks: half the watchdog timeout, as `sd_watchdog_enabled(3)`
/// advises, or [`TICK_WITHOUT_WATCHDOG_MS`].
fn tick(watchdog: Option<Duration>) -> Duration {
    watchdog.map_or(Duration::from_millis(TICK_WITHOUT_WATCHDOG_MS), |w| w / 2)
}

/// Notifies systemd until `stop`: readiness once, then watchdog pings and status lines
/// (see the module's documentation).
pub async fn run(s: AppState, mut stop: watch::Receiver<bool>) {
    if !enabled() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled().filter(|w| !w.is_zero());
    let tick = tick(watchdog);
    tracing::info!(
        watchdog_ms = watchdog.map(|w| w.as_millis() as u64),
        "notifying systemd: READY=1 once ready{}",
        if watchdog.is_some() {
            ", WATCHDOG=1 while the Raft core is alive"
        } else {
            ""
        }
    );
    let extend_usec = u32::try_from((tick * EXTEND_TICKS).as_micros()).unwrap_or(u32::MAX);
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut poll = tokio::time::interval(Duration::from_millis(READY_POLL_MS));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ready = false;
    let mut was_alive = true;
    loop {
        // The select only says what woke the task: a guard of `stop` must not live across
        // the awaits below.
        let poll_now = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = poll.tick(), if !ready => true,
            _ = ticks.tick() => false,
        };
        if poll_now {
            if gavel_api::cluster::readiness(&s).await.ready {
                ready = true;
                tracing::info!("ready: notified systemd");
                send(&[NotifyState::Ready, NotifyState::Status(&status(&s.raft, true))]);
            }
            continue;
        }
        let alive = core_alive(&s.raft, tick / 2).await;
        let status = match &alive {
            Ok(()) => status(&s.raft, ready),
            Err(why) => why.clone(),
        };
        match (&alive, was_alive) {
            (Err(why), true) => tracing::error!(
                reason = %why,
                "the Raft core is not alive: no more watchdog pings; systemd will restart this node"
            ),
            (Ok(()), false) => tracing::info!("the Raft core answers again: watchdog pings resume"),
            _ => {}
        }
        was_alive = alive.is_ok();
        let mut states = vec![NotifyState::Status(&status)];
        if alive.is_ok() {
            if watchdog.is_some() {
                states.push(NotifyState::Watchdog);
            }
            if !ready {
                states.push(NotifyState::ExtendTimeoutUsec(extend_usec));
            }
        }
        send(&states);
    }
}

/// Whether the Raft core is alive: its metrics say it runs, and it answers a request
/// (`with_raft_state`, handled in its main loop) within `bound`.
pub async fn core_alive(raft: &Raft, bound: Duration) -> Result<(), String> {
    if let Err(fatal) = &raft.metrics().borrow_watched().running_state {
        return Err(format!("the Raft core stopped: {fatal}"));
    }
    answers_within(raft.with_raft_state(|_| ()), bound).await
}

/// `Ok` when `answer` resolves to `Ok` within `bound`.
async fn answers_within<E: std::fmt::Display>(
    answer: impl Future<Output = Result<(), E>>,
    bound: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(bound, answer).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the Raft core stopped: {e}")),
        Err(_) => Err(format!("the Raft core did not answer within {} ms", bound.as_millis())),
    }
}

/// One status line: "leader (term 3), applied 1234" or "follower of node 2 (term 3),
/// applied 1234", then "ready" or what it waits for.
fn status(raft: &Raft, ready: bool) -> String {
    let m = raft.metrics().borrow_watched().clone();
    let role = match (m.state, m.current_leader) {
        (ServerState::Leader, _) => "leader".to_string(),
        (ServerState::Learner, _) => "learner".to_string(),
        (ServerState::Candidate, _) => "candidate".to_string(),
        (ServerState::Shutdown, _) => "shut down".to_string(),
        (ServerState::Follower, Some(leader)) => format!("follower of node {leader}"),
        (ServerState::Follower, None) => "follower, no leader known".to_string(),
    };
    let applied = m.last_applied.map_or(0, |l| l.index);
    let state = if ready { "ready" } else { "not ready yet" };
    format!("{role} (term {}), applied {applied}, {state}", m.current_term)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_core_that_does_not_answer_in_time_is_not_alive() {
        let bound = Duration::from_millis(50);
        assert_eq!(answers_within(async { Ok::<(), String>(()) }, bound).await, Ok(()));
        let stopped = answers_within(async { Err::<(), _>("fatal: storage error") }, bound).await;
        assert!(stopped.unwrap_err().contains("stopped"));
        let wedged = answers_within(std::future::pending::<Result<(), String>>(), bound).await;
        assert!(wedged.unwrap_err().contains("did not answer within 50 ms"));
        let slow = answers_within(
            async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok::<(), String>(())
            },
            bound,
        )
        .await;
        assert!(slow.is_err(), "an answer after the bound does not count");
    }

    #[test]
    fn the_tick_is_half_the_watchdog_timeout() {
        assert_eq!(tick(Some(Duration::from_secs(30))), Duration::from_secs(15));
        assert_eq!(tick(None), Duration::from_millis(TICK_WITHOUT_WATCHDOG_MS));
    }
}
