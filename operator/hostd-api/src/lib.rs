//! The protocol between hakube-operator and hakube-hostd.
//!
//! - [`v1`]: the gRPC service `hakube.hostd.v1.Hostd` (generated client and server) and its messages.
//! - [`join`]: the JSON bodies of the HTTPS join exchange, in which a host trades a one-time token
//!   and a certificate signing request for its certificate.
//! - [`client`]: a gRPC channel to a hostd with the operator's client certificate.
//! - [`bundle`]: the archive format of the version bundles the operator serves to hosts.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod client;
pub mod join;

/// Generated from `proto/hostd.proto`.
pub mod v1 {
    tonic::include_proto!("hakube.hostd.v1");
}

/// The common name hostd accepts in client certificates unless told otherwise.
pub const OPERATOR_CLIENT_COMMON_NAME: &str = "hakube-operator";

/// The port hostd listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 9443;
