//! gavel-api: HTTP JSON API, leader forwarding, SSE and the UDP fast path (issue: auction API).
