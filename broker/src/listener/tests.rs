//! Listener tests with real TLS handshakes on 127.0.0.1:0.
