//! `openssl s_server` and `s_client` as test peers.
