//! The join exchange: hostd POSTs a [`JoinRequest`] as JSON to the operator's join URL over
//! HTTPS (verifying the server with the join CA, presenting no client certificate). The operator
//! answers 200 with a [`JoinResponse`], or a 4xx status with a [`JoinErrorResponse`] (an unknown,
//! used or expired token, a CSR it will not sign). Hostd retries connection failures and 5xx
//! answers, and gives up at the first 4xx, exiting with the message.

use serde::{Deserialize, Serialize};

/// Content type of every join body.
pub const CONTENT_TYPE: &str = "application/json";

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    /// The one-time token the operator issued for this host.
    pub token: String,
    /// The Host object's name; also the CSR's common name.
    pub host_name: String,
    /// PEM certificate signing request: CN = host name, SANs = the host's advertised addresses
    /// (IP SANs for IP addresses, DNS SANs for names). Its key is EC P-256.
    pub csr: String,
}

/// Keeps the token out of logs.
impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("token", &"<redacted>")
            .field("host_name", &self.host_name)
            .field("csr", &self.csr)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    /// PEM: the host's certificate, signed for server authentication (hostd serves gRPC with it)
    /// and client authentication (hostd fetches bundles with it). May be followed by intermediates.
    pub certificate: String,
    /// PEM: the CA hostd trusts for its gRPC clients and for the operator's artifact endpoint.
    pub ca_certificate: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinErrorResponse {
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_bodies_use_the_documented_json_names() {
        let request = JoinRequest {
            token: "t".into(),
            host_name: "cp-1".into(),
            csr: "pem".into(),
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            serde_json::json!({"token": "t", "hostName": "cp-1", "csr": "pem"})
        );
        let response: JoinResponse =
            serde_json::from_str(r#"{"certificate":"a","caCertificate":"b"}"#).unwrap();
        assert_eq!(response.ca_certificate, "b");
        let error: JoinErrorResponse = serde_json::from_str(r#"{"message":"bad token"}"#).unwrap();
        assert_eq!(error.message, "bad token");
    }

    #[test]
    fn debug_output_hides_the_token() {
        let request = JoinRequest {
            token: "secret-token".into(),
            host_name: "cp-1".into(),
            csr: String::new(),
        };
        assert!(!format!("{request:?}").contains("secret-token"));
    }
}
