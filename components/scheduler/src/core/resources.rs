//! Resource amounts as the scheduler counts them: cpu in millicores, everything else in units
//! (bytes for memory and ephemeral storage), and what a pod requests, counted as upstream does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// Upstream's defaults for containers that request nothing, used only for scoring so that
/// such pods still spread (schedutil.DefaultMilliCPURequest / DefaultMemoryRequest).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Parses a Kubernetes quantity ("100m", "1.5Gi", "2e3") into base units times `scale`
/// (1000 for millicores), rounding up as upstream's MilliValue/Value do. Exact decimal
/// arithmetic: "0.35" cpu is 350 millicores, not 351.
pub fn parse_quantity(text: &str, scale: i128) -> Option<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let mut mantissa: i128 = 0;
    for c in whole.chars().chain(fraction.chars()) {
        let digit = i128::from(c.to_digit(10)? as u8);
        mantissa = mantissa.checked_mul(10)?.checked_add(digit)?;
    }
    let pow10 = |e: u32| 10i128.checked_pow(e);
    let mut denominator = pow10(u32::try_from(fraction.len()).ok()?)?;
    let numerator_scale: i128 = match suffix {
        "" => 1,
        "n" | "u" | "m" => {
            denominator = denominator.checked_mul(match suffix {
                "n" => 1_000_000_000,
                "u" => 1_000_000,
                _ => 1_000,
            })?;
            1
        }
        "k" => 1_000,
        "M" => pow10(6)?,
        "G" => pow10(9)?,
        "T" => pow10(12)?,
        "P" => pow10(15)?,
        "E" => pow10(18)?,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        exponent if exponent.starts_with(['e', 'E']) => {
            let e: i32 = exponent[1..].parse().ok()?;
            if e >= 0 {
                pow10(e.unsigned_abs())?
            } else {
                denominator = denominator.checked_mul(pow10(e.unsigned_abs())?)?;
                1
            }
        }
        _ => return None,
    };
    let numerator = mantissa.checked_mul(numerator_scale)?.checked_mul(scale)?;
    // Ceiling division, so a fraction of a unit still counts as one.
    let value = (numerator + denominator - 1) / denominator;
    let value = i64::try_from(value).ok()?;
    Some(if negative { -value } else { value })
}

fn quantity(name: &str, q: &Quantity) -> i64 {
    let scale = if name == CPU { 1000 } else { 1 };
    parse_quantity(&q.0, scale).unwrap_or(0)
}

/// An amount of every resource the scheduler tracks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    /// Extended and hugepage resources by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    pub fn from_map(map: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in map {
            r.set(name, quantity(name, q));
        }
        r
    }

    pub fn get(&self, name: &str) -> i64 {
        match name {
            CPU => self.milli_cpu,
            MEMORY => self.memory,
            EPHEMERAL_STORAGE => self.ephemeral_storage,
            PODS => self.pods,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }

    pub fn set(&mut self, name: &str, value: i64) {
        match name {
            CPU => self.milli_cpu = value,
            MEMORY => self.memory = value,
            EPHEMERAL_STORAGE => self.ephemeral_storage = value,
            PODS => self.pods = value,
            other => {
                self.scalar.insert(other.to_string(), value);
            }
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) += v;
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) -= v;
        }
    }

    /// Each resource the larger of the two.
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.pods = self.pods.max(other.pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }
}

fn container_requests(c: &Container) -> Resources {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(Resources::from_map)
        .unwrap_or_default()
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// What a pod requests as upstream counts it: the larger of the app containers (plus sidecars)
/// and the largest init container (plus the sidecars started before it), plus overhead.
/// `non_zero` substitutes upstream's scoring defaults for containers requesting no cpu/memory.
pub fn pod_requests(spec: &PodSpec, non_zero: bool) -> Resources {
    let adjust = |mut r: Resources| {
        if non_zero {
            if r.milli_cpu == 0 {
                r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
            }
            if r.memory == 0 {
                r.memory = DEFAULT_MEMORY_REQUEST;
            }
        }
        r
    };
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&adjust(container_requests(c)));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let request = adjust(container_requests(c));
        if is_sidecar(c) {
            sidecars.add(&request);
            init_peak.max_with(&sidecars);
        } else {
            let mut during = request;
            during.add(&sidecars);
            init_peak.max_with(&during);
        }
    }
    total.add(&sidecars);
    total.max_with(&init_peak);
    if let Some(overhead) = &spec.overhead {
        total.add(&Resources::from_map(overhead));
    }
    total.pods = 1;
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn container(cpu: &str, memory: &str) -> Container {
        let mut requests = BTreeMap::new();
        if !cpu.is_empty() {
            requests.insert(CPU.to_string(), Quantity(cpu.into()));
        }
        if !memory.is_empty() {
            requests.insert(MEMORY.to_string(), Quantity(memory.into()));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(requests),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn quantities_parse_in_upstream_units() {
        assert_eq!(parse_quantity("100m", 1000), Some(100));
        assert_eq!(parse_quantity("1.5", 1000), Some(1500));
        assert_eq!(parse_quantity("0.35", 1000), Some(350));
        assert_eq!(parse_quantity("1Gi", 1), Some(1 << 30));
        assert_eq!(parse_quantity("128Mi", 1), Some(128 << 20));
        assert_eq!(parse_quantity("1k", 1), Some(1000));
        assert_eq!(parse_quantity("2e3", 1), Some(2000));
        assert_eq!(parse_quantity("1n", 1000), Some(1));
        assert_eq!(parse_quantity("1.5m", 1), Some(1));
        assert_eq!(parse_quantity("bogus", 1), None);
        assert_eq!(parse_quantity("", 1), None);
    }

    #[test]
    fn init_containers_count_as_upstream() {
        let spec = PodSpec {
            containers: vec![container("100m", "100Mi"), container("200m", "")],
            init_containers: Some(vec![container("500m", "50Mi"), container("100m", "1Gi")]),
            ..Default::default()
        };
        let r = pod_requests(&spec, false);
        assert_eq!(r.milli_cpu, 500);
        assert_eq!(r.memory, 1 << 30);
        assert_eq!(r.pods, 1);
    }

    #[test]
    fn sidecars_add_to_containers_and_later_init_containers() {
        let mut sidecar = container("300m", "");
        sidecar.restart_policy = Some("Always".into());
        let spec = PodSpec {
            containers: vec![container("100m", "")],
            init_containers: Some(vec![sidecar, container("350m", "")]),
            ..Default::default()
        };
        // init phase: 300 + 350 = 650; running: 100 + 300 = 400.
        assert_eq!(pod_requests(&spec, false).milli_cpu, 650);
    }

    #[test]
    fn scoring_defaults_fill_missing_requests() {
        let spec = PodSpec {
            containers: vec![container("", "")],
            ..Default::default()
        };
        let r = pod_requests(&spec, true);
        assert_eq!(r.milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(r.memory, DEFAULT_MEMORY_REQUEST);
        assert_eq!(pod_requests(&spec, false).milli_cpu, 0);
    }
}
