//! A gRPC client of hostd with the operator's client certificate.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::v1::hostd_client::HostdClient;

/// Large enough for any ReadUnitLog answer (at most 1 MiB of log) and big files.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid hostd endpoint {endpoint:?}: {source}")]
    InvalidEndpoint {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("TLS settings for hostd endpoint {endpoint:?}: {source}")]
    Tls {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("connecting to hostd at {endpoint:?}: {source}")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
}

/// PEM material for a mutual-TLS connection to hostd.
#[derive(Clone)]
pub struct ClientTls {
    /// The CA that signed hostd's serving certificates (the cluster's host CA).
    pub ca_pem: Vec<u8>,
    /// The operator's client certificate (CN `hakube-operator`) and its key.
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// The name to verify hostd's certificate against; `None`: the endpoint's host (an IP
    /// address is checked against the certificate's IP SANs).
    pub server_name: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Settings for the channel to one hostd.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Per-call deadline; `None`: none (FetchBundle of a large bundle can take a while).
    pub request_timeout: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            request_timeout: None,
        }
    }
}

/// The endpoint `https://<address>` with mutual TLS. `address` is `host:port` or an `https://` URL.
pub fn endpoint(
    address: &str,
    tls: &ClientTls,
    options: &ClientOptions,
) -> Result<Endpoint, ClientError> {
    let url = if address.contains("://") {
        address.to_string()
    } else {
        format!("https://{address}")
    };
    let mut tls_config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&tls.ca_pem))
        .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
    if let Some(name) = &tls.server_name {
        tls_config = tls_config.domain_name(name.clone());
    }
    let mut endpoint = Endpoint::from_shared(url)
        .map_err(|source| ClientError::InvalidEndpoint {
            endpoint: address.to_string(),
            source,
        })?
        .connect_timeout(options.connect_timeout)
        .tls_config(tls_config)
        .map_err(|source| ClientError::Tls {
            endpoint: address.to_string(),
            source,
        })?;
    if let Some(timeout) = options.request_timeout {
        endpoint = endpoint.timeout(timeout);
    }
    Ok(endpoint)
}

/// A client of the hostd at `address`; connects (and fails) now.
pub async fn connect(
    address: &str,
    tls: &ClientTls,
    options: &ClientOptions,
) -> Result<HostdClient<Channel>, ClientError> {
    let channel = endpoint(address, tls, options)?
        .connect()
        .await
        .map_err(|source| ClientError::Connect {
            endpoint: address.to_string(),
            source,
        })?;
    Ok(client(channel))
}

/// A client of the hostd at `address` that connects on first use and reconnects as needed.
pub fn connect_lazy(
    address: &str,
    tls: &ClientTls,
    options: &ClientOptions,
) -> Result<HostdClient<Channel>, ClientError> {
    Ok(client(endpoint(address, tls, options)?.connect_lazy()))
}

fn client(channel: Channel) -> HostdClient<Channel> {
    HostdClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}
