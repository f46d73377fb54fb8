//! gavel-raft: Raft configuration, node-to-node network and membership (issue: cluster node).
