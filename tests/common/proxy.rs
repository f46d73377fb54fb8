//! A TCP proxy in front of each test node, for network partitions.
//!
//! Each node advertises its proxy's address, so peers and clients reach it through the
//! proxy, and binds its own outgoing connections to `127.0.0.<10 + id>` (`source_ip`),
//! so the proxy knows which node a connection comes from (`127.0.0.1` is a client).
//! Cutting the link a→b refuses new connections from a to b's proxy and aborts the open
//! ones. Links are directed; `isolate` cuts both directions between a node and the rest.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The source address node `id` binds its outgoing connections to.
pub fn source_ip(id: u64) -> IpAddr {
    IpAddr::from([127, 0, 0, 10 + id as u8])
}

fn node_of(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) if v4.octets()[3] > 10 => u64::from(v4.octets()[3] - 10),
        _ => 0,
    }
}

#[derive(Clone, Default)]
pub struct Proxies {
    blocked: Arc<Mutex<HashSet<(u64, u64)>>>,
    open: Arc<Mutex<Vec<(u64, u64, AbortHandle)>>>,
}

impl Proxies {
    /// Serves `listener` as node `dst`'s proxy, forwarding to `target`.
    pub fn spawn(&self, dst: u64, listener: std::net::TcpListener, target: String) {
        listener.set_nonblocking(true).unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            while let Ok((mut inbound, from)) = listener.accept().await {
                let src = node_of(from.ip());
                if me.blocked.lock().unwrap().contains(&(src, dst)) {
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = outbound.set_nodelay(true);
                        let _ = inbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut open = me.open.lock().unwrap();
                open.retain(|(_, _, h)| !h.is_finished());
                open.push((src, dst, task.abort_handle()));
            }
        });
    }

    /// Cuts every link between `node` and `others`, both ways, including open connections.
    pub fn isolate(&self, node: u64, others: &[u64]) {
        let mut blocked = self.blocked.lock().unwrap();
        for o in others {
            blocked.insert((node, *o));
            blocked.insert((*o, node));
        }
        for (s, d, h) in self.open.lock().unwrap().iter() {
            if blocked.contains(&(*s, *d)) {
                h.abort();
            }
        }
    }

    pub fn heal(&self) {
        self.blocked.lock().unwrap().clear();
    }
}
