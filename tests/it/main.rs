//! End-to-end tests: each starts the real `hameau` binary with a temporary data directory
//! on 127.0.0.1 ports chosen by the system, and talks to it over real sockets.

mod acme;
mod api;
mod attack;
mod attack_admin;
mod attack_imap;
mod attack_mail;
mod attack_smtp;
mod autoconfig;
mod backup;
mod cli;
mod config;
mod dns;
mod export;
mod filter;
mod filter_learning;
mod imap;
mod imap_clients;
mod imap_compress;
mod import_files;
mod imports_api;
mod jmap;
mod jmap_email;
mod migrate_imap;
mod outbound_faults;
mod outbound_tls;
mod postfix;
mod queue;
mod schemathesis;
mod serve;
mod setup;
mod smtp;
mod soak;
mod submission;
mod support;
