//! ClusterIP and NodePort allocation. Each allocated address or port is a key in etcd, created in
//! the same transaction as the Service that holds it, so two concurrent creates can never get
//! the same one and a delete frees it atomically.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use hakube_apimachinery::status::StatusCause;
use ipnet::Ipv4Net;
use rand::Rng;
use serde_json::{json, Value};

pub const SERVICE_IPS: &str = "serviceips";
pub const NODE_PORTS: &str = "servicenodeports";

#[derive(Debug, Clone)]
pub struct ServiceRanges {
    pub cluster_ips: Ipv4Net,
    pub node_ports: (u16, u16),
}

/// What a Service needs from the ranges: addresses and ports to claim, and ones it holds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Claims {
    pub ips: Vec<String>,
    pub ports: Vec<String>,
}

impl ServiceRanges {
    /// The address of the `kubernetes` Service: the first in the range.
    pub fn first_ip(&self) -> Ipv4Addr {
        let base = u32::from(self.cluster_ips.network());
        Ipv4Addr::from(base + 1)
    }

    fn usable_ips(&self) -> (u32, u32) {
        let net = u32::from(self.cluster_ips.network());
        let bcast = u32::from(self.cluster_ips.broadcast());
        if self.cluster_ips.prefix_len() >= 31 {
            (net, bcast)
        } else {
            (net + 1, bcast - 1)
        }
    }

    /// Picks a free address not in `taken`, at random so concurrent allocators rarely collide.
    pub fn pick_ip(&self, taken: &HashSet<String>) -> Option<Ipv4Addr> {
        let (lo, hi) = self.usable_ips();
        let size = u64::from(hi - lo) + 1;
        let start = rand::rng().random_range(0..size);
        (0..size)
            .map(|i| Ipv4Addr::from(lo + ((start + i) % size) as u32))
            .find(|ip| !taken.contains(&ip.to_string()))
    }

    pub fn pick_port(&self, taken: &HashSet<String>) -> Option<u16> {
        let (lo, hi) = self.node_ports;
        let size = u32::from(hi - lo) + 1;
        let start = rand::rng().random_range(0..size);
        (0..size)
            .map(|i| lo + ((start + i) % size) as u16)
            .find(|p| !taken.contains(&p.to_string()))
    }

    pub fn contains_ip(&self, ip: Ipv4Addr) -> bool {
        let (lo, hi) = self.usable_ips();
        (lo..=hi).contains(&u32::from(ip))
    }

    pub fn contains_port(&self, port: i64) -> bool {
        (i64::from(self.node_ports.0)..=i64::from(self.node_ports.1)).contains(&port)
    }

    /// Fills in the Service's clusterIP and nodePorts (picking from what is free), checks the
    /// ones the user chose, and returns every claim the Service holds. `old` is the stored
    /// Service on update: what it already holds is kept, not claimed again.
    pub fn assign(
        &self,
        service: &mut Value,
        old: Option<&Value>,
        taken_ips: &HashSet<String>,
        taken_ports: &HashSet<String>,
    ) -> Result<Claims, Vec<StatusCause>> {
        let mut causes = Vec::new();
        let mut claims = Claims::default();
        let ty = service
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        let old_ip = old
            .and_then(|o| o.pointer("/spec/clusterIP"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let requested = service
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if ty == "ExternalName" {
            if !requested.is_empty() {
                causes.push(StatusCause::forbidden(
                    "spec.clusterIP",
                    "may not be set for ExternalName services",
                ));
            }
        } else if requested == "None" {
            set_cluster_ip(service, "None");
        } else if requested.is_empty() {
            match old_ip.filter(|ip| !ip.is_empty() && ip != "None") {
                Some(ip) => {
                    set_cluster_ip(service, &ip);
                    claims.ips.push(ip);
                }
                None => match self.pick_ip(taken_ips) {
                    Some(ip) => {
                        set_cluster_ip(service, &ip.to_string());
                        claims.ips.push(ip.to_string());
                    }
                    None => causes.push(StatusCause::invalid(
                        "spec.clusterIPs",
                        json!([requested]),
                        "failed to allocate IP: range is full",
                    )),
                },
            }
        } else {
            match requested.parse::<Ipv4Addr>() {
                Err(_) => causes.push(StatusCause::invalid(
                    "spec.clusterIPs",
                    json!([requested]),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )),
                Ok(ip) if !self.contains_ip(ip) => causes.push(StatusCause::invalid(
                    "spec.clusterIPs",
                    json!([requested]),
                    format!(
                        "failed to allocate IP {requested}: provided IP is not in the valid range. The range of valid IPs is {}",
                        self.cluster_ips
                    ),
                )),
                Ok(_) if old_ip.as_deref() != Some(requested.as_str()) && taken_ips.contains(&requested) => {
                    causes.push(StatusCause::invalid(
                        "spec.clusterIPs",
                        json!([requested]),
                        format!("failed to allocate IP {requested}: provided IP is already allocated"),
                    ))
                }
                Ok(_) => {
                    set_cluster_ip(service, &requested);
                    claims.ips.push(requested.clone());
                }
            }
        }
        if ty == "NodePort" || ty == "LoadBalancer" {
            let old_ports: Vec<(i64, String, i64)> = old
                .and_then(|o| o.pointer("/spec/ports"))
                .and_then(Value::as_array)
                .map(|ports| {
                    ports
                        .iter()
                        .filter_map(|p| {
                            Some((
                                p.get("port")?.as_i64()?,
                                p.get("protocol")
                                    .and_then(Value::as_str)
                                    .unwrap_or("TCP")
                                    .to_string(),
                                p.get("nodePort")?.as_i64()?,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            // Ports the user chose are never handed out automatically to a sibling port.
            let requested_ports: HashSet<String> = service
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ports| {
                    ports
                        .iter()
                        .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
                        .filter(|n| *n != 0)
                        .map(|n| n.to_string())
                        .collect()
                })
                .unwrap_or_default();
            // A node port serves one protocol each: 53/TCP and 53/UDP may share one, and a
            // port number exposed over two protocols gets the same node port for both.
            let mut chosen: HashSet<(String, i64)> = HashSet::new();
            let mut by_service_port: Vec<(i64, i64)> = Vec::new();
            if let Some(ports) = service
                .pointer_mut("/spec/ports")
                .and_then(Value::as_array_mut)
            {
                for (i, p) in ports.iter_mut().enumerate() {
                    let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                    let protocol = p
                        .get("protocol")
                        .and_then(Value::as_str)
                        .unwrap_or("TCP")
                        .to_string();
                    let held = old_ports
                        .iter()
                        .find(|(op, opr, _)| *op == port && *opr == protocol)
                        .map(|(_, _, n)| *n);
                    let node_port = p
                        .get("nodePort")
                        .and_then(Value::as_i64)
                        .filter(|n| *n != 0);
                    let assigned = match node_port {
                        Some(n) if !self.contains_port(n) => {
                            causes.push(StatusCause::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                json!(n),
                                format!(
                                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                                    self.node_ports.0, self.node_ports.1
                                ),
                            ));
                            continue;
                        }
                        Some(n) => {
                            let held_by_us = old_ports.iter().any(|(_, _, h)| *h == n);
                            let ours = held_by_us || chosen.iter().any(|(_, c)| *c == n);
                            if (!ours && taken_ports.contains(&n.to_string()))
                                || chosen.contains(&(protocol.clone(), n))
                            {
                                causes.push(StatusCause::invalid(
                                    format!("spec.ports[{i}].nodePort"),
                                    json!(n),
                                    "provided port is already allocated",
                                ));
                                continue;
                            }
                            n
                        }
                        None => match held.or_else(|| {
                            by_service_port
                                .iter()
                                .find(|(sp, n)| {
                                    *sp == port && !chosen.contains(&(protocol.clone(), *n))
                                })
                                .map(|(_, n)| *n)
                        }) {
                            Some(n) => n,
                            None => {
                                let mut unavailable = taken_ports.clone();
                                unavailable.extend(chosen.iter().map(|(_, n)| n.to_string()));
                                unavailable.extend(requested_ports.iter().cloned());
                                match self.pick_port(&unavailable) {
                                    Some(n) => i64::from(n),
                                    None => {
                                        causes.push(StatusCause::invalid(
                                            format!("spec.ports[{i}].nodePort"),
                                            json!(0),
                                            "failed to allocate a nodePort: range is full",
                                        ));
                                        continue;
                                    }
                                }
                            }
                        },
                    };
                    if let Some(map) = p.as_object_mut() {
                        map.insert("nodePort".into(), json!(assigned));
                    }
                    chosen.insert((protocol, assigned));
                    by_service_port.push((port, assigned));
                    if !claims.ports.contains(&assigned.to_string()) {
                        claims.ports.push(assigned.to_string());
                    }
                }
            }
        }
        if causes.is_empty() {
            Ok(claims)
        } else {
            Err(causes)
        }
    }
}

fn set_cluster_ip(service: &mut Value, ip: &str) {
    crate::objects::set_at(service, "spec.clusterIP", json!(ip));
    crate::objects::set_at(service, "spec.clusterIPs", json!([ip]));
}

/// The claims a stored Service holds.
pub fn held(service: &Value) -> Claims {
    let mut claims = Claims::default();
    if let Some(ip) = service.pointer("/spec/clusterIP").and_then(Value::as_str) {
        if !ip.is_empty() && ip != "None" {
            claims.ips.push(ip.to_string());
        }
    }
    if let Some(ports) = service.pointer("/spec/ports").and_then(Value::as_array) {
        for p in ports {
            if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
                if !claims.ports.contains(&n.to_string()) {
                    claims.ports.push(n.to_string());
                }
            }
        }
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges() -> ServiceRanges {
        ServiceRanges {
            cluster_ips: "10.96.0.0/29".parse().unwrap(),
            node_ports: (30000, 30002),
        }
    }

    #[test]
    fn picks_only_free_usable_addresses() {
        let r = ranges();
        let mut taken = HashSet::new();
        for _ in 0..6 {
            let ip = r.pick_ip(&taken).unwrap();
            assert!(r.contains_ip(ip));
            assert!(taken.insert(ip.to_string()), "{ip} picked twice");
        }
        assert!(!taken.contains("10.96.0.0") && !taken.contains("10.96.0.7"));
        assert_eq!(r.pick_ip(&taken), None);
        assert_eq!(r.first_ip().to_string(), "10.96.0.1");
    }

    #[test]
    fn assigns_cluster_ip_and_node_ports() {
        let r = ranges();
        let mut svc = json!({"spec":{"type":"NodePort","ports":[{"port":80,"protocol":"TCP"},{"port":443,"protocol":"TCP","nodePort":30001}]}});
        let claims = r
            .assign(&mut svc, None, &HashSet::new(), &HashSet::new())
            .unwrap();
        assert_eq!(claims.ips.len(), 1);
        assert_eq!(svc["spec"]["clusterIPs"][0], svc["spec"]["clusterIP"]);
        assert_eq!(svc["spec"]["ports"][1]["nodePort"], 30001);
        let auto = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert!(auto == 30000 || auto == 30002);
        assert_eq!(held(&svc), claims);
    }

    #[test]
    fn rejects_taken_and_out_of_range_choices() {
        let r = ranges();
        let taken: HashSet<String> = ["10.96.0.3".to_string()].into();
        let mut svc = json!({"spec":{"clusterIP":"10.96.0.3","ports":[{"port":80}]}});
        let causes = r
            .assign(&mut svc, None, &taken, &HashSet::new())
            .unwrap_err();
        assert!(causes[0]
            .message
            .contains("provided IP is already allocated"));
        let mut svc = json!({"spec":{"clusterIP":"10.1.0.3","ports":[{"port":80}]}});
        let causes = r
            .assign(&mut svc, None, &HashSet::new(), &HashSet::new())
            .unwrap_err();
        assert!(causes[0].message.contains("not in the valid range"));
    }

    #[test]
    fn updates_keep_what_the_service_holds() {
        let r = ranges();
        let old = json!({"spec":{"type":"NodePort","clusterIP":"10.96.0.3","ports":[{"port":80,"protocol":"TCP","nodePort":30002}]}});
        let taken_ips: HashSet<String> = ["10.96.0.3".to_string()].into();
        let taken_ports: HashSet<String> = ["30002".to_string()].into();
        let mut new = json!({"spec":{"type":"NodePort","clusterIP":"10.96.0.3","ports":[{"port":80,"protocol":"TCP"}]}});
        let claims = r
            .assign(&mut new, Some(&old), &taken_ips, &taken_ports)
            .unwrap();
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30002);
        assert_eq!(claims, held(&old));
    }

    #[test]
    fn tcp_and_udp_share_a_node_port() {
        let r = ranges();
        let mut dns = json!({"spec":{"type":"NodePort","ports":[
            {"name":"tcp","port":53,"protocol":"TCP"},{"name":"udp","port":53,"protocol":"UDP"}]}});
        let claims = r
            .assign(&mut dns, None, &HashSet::new(), &HashSet::new())
            .unwrap();
        assert_eq!(
            dns["spec"]["ports"][0]["nodePort"],
            dns["spec"]["ports"][1]["nodePort"]
        );
        assert_eq!(claims.ports.len(), 1);
        let mut explicit = json!({"spec":{"type":"NodePort","ports":[
            {"name":"tcp","port":53,"protocol":"TCP","nodePort":30001},{"name":"udp","port":53,"protocol":"UDP","nodePort":30001}]}});
        assert!(r
            .assign(&mut explicit, None, &HashSet::new(), &HashSet::new())
            .is_ok());
        let mut clash = json!({"spec":{"type":"NodePort","ports":[
            {"name":"a","port":80,"protocol":"TCP","nodePort":30001},{"name":"b","port":81,"protocol":"TCP","nodePort":30001}]}});
        assert!(r
            .assign(&mut clash, None, &HashSet::new(), &HashSet::new())
            .is_err());
    }

    #[test]
    fn headless_and_external_name_hold_nothing() {
        let r = ranges();
        let mut headless = json!({"spec":{"clusterIP":"None"}});
        assert_eq!(
            r.assign(&mut headless, None, &HashSet::new(), &HashSet::new())
                .unwrap(),
            Claims::default()
        );
        let mut ext = json!({"spec":{"type":"ExternalName","externalName":"x.example.com"}});
        assert_eq!(
            r.assign(&mut ext, None, &HashSet::new(), &HashSet::new())
                .unwrap(),
            Claims::default()
        );
    }
}
