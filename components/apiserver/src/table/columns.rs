//! Upstream's column definitions, in upstream's order. Descriptions are our own short
//! summaries of what each column shows.

use super::Column;

const META_NAME: &str = "Name of the object, unique within its namespace.";
const META_CREATED: &str = "When the object was created, shown as an age.";

const fn col(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        format: "",
        description,
        priority: 0,
    }
}

/// A column `kubectl get` shows only with `-o wide`.
const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        priority: 1,
        ..col(name, kind, description)
    }
}

const NAME: Column = Column {
    format: "name",
    ..col("Name", "string", META_NAME)
};
const AGE: Column = col("Age", "string", META_CREATED);
const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of the containers in the pod template.",
);
const IMAGES: Column = wide(
    "Images",
    "string",
    "Container images used by the pod template.",
);

/// What upstream serves for resources without a printer.
pub(super) static DEFAULT: [Column; 2] = [
    NAME,
    col(
        "Created At",
        "date",
        "Time at which the object was created.",
    ),
];

pub(super) static PODS: [Column; 9] = [
    NAME,
    col(
        "Ready",
        "string",
        "Number of the pod's containers that are ready, out of the total.",
    ),
    col(
        "Status",
        "string",
        "Overall state of the pod, summarised from its containers.",
    ),
    col(
        "Restarts",
        "string",
        "How often the pod's containers restarted, and how long ago the last one.",
    ),
    AGE,
    wide("IP", "string", "IP address assigned to the pod, if any."),
    wide("Node", "string", "Node the pod has been scheduled onto."),
    wide(
        "Nominated Node",
        "string",
        "Node picked for the pod after it preempted other pods there.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "Extra readiness conditions that are met, out of those the pod declares.",
    ),
];

pub(super) static DEPLOYMENTS: [Column; 8] = [
    NAME,
    col(
        "Ready",
        "string",
        "Number of pods that are ready out of those desired.",
    ),
    col(
        "Up-to-date",
        "string",
        "Number of pods already running the latest pod template.",
    ),
    col(
        "Available",
        "string",
        "Number of pods that have been ready long enough to count as available.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Label selector picking the pods this deployment manages.",
    ),
];

pub(super) static REPLICA_SETS: [Column; 8] = [
    NAME,
    col(
        "Desired",
        "integer",
        "Number of pods this replica set is asked to run.",
    ),
    col(
        "Current",
        "integer",
        "Number of pods this replica set currently has.",
    ),
    col(
        "Ready",
        "integer",
        "Number of this replica set's pods that are ready.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Label selector picking the pods this replica set manages.",
    ),
];

pub(super) static STATEFUL_SETS: [Column; 5] = [
    NAME,
    col(
        "Ready",
        "string",
        "Number of pods that are ready out of those desired.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
];

pub(super) static DAEMON_SETS: [Column; 11] = [
    NAME,
    col(
        "Desired",
        "integer",
        "Number of nodes that should run a pod of this daemon set.",
    ),
    col(
        "Current",
        "integer",
        "Number of nodes currently running a pod of this daemon set.",
    ),
    col(
        "Ready",
        "integer",
        "Number of nodes whose daemon pod is ready.",
    ),
    col(
        "Up-to-date",
        "integer",
        "Number of nodes running the latest version of the daemon pod.",
    ),
    col(
        "Available",
        "integer",
        "Number of nodes whose daemon pod has been ready long enough to be available.",
    ),
    col(
        "Node Selector",
        "string",
        "Labels a node must carry to run the daemon pod.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Label selector picking the pods this daemon set manages.",
    ),
];

const JOB_SELECTOR: &str = "Label selector picking the pods that belong to the job.";

pub(super) static JOBS: [Column; 8] = [
    NAME,
    col(
        "Status",
        "string",
        "Current state of the job, such as Running or Complete.",
    ),
    col(
        "Completions",
        "string",
        "Pods that finished successfully, out of the number required.",
    ),
    col(
        "Duration",
        "string",
        "How long the job has been running, or took to finish.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", JOB_SELECTOR),
];

pub(super) static CRON_JOBS: [Column; 10] = [
    NAME,
    col(
        "Schedule",
        "string",
        "Cron expression saying when new jobs are started.",
    ),
    col(
        "Timezone",
        "string",
        "Time zone the schedule is interpreted in, if one is set.",
    ),
    col(
        "Suspend",
        "boolean",
        "Whether new runs of this cron job are paused.",
    ),
    col(
        "Active",
        "integer",
        "Number of jobs from this cron job that are running now.",
    ),
    col(
        "Last Schedule",
        "string",
        "How long ago this cron job last started a job.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", JOB_SELECTOR),
];

pub(super) static SERVICES: [Column; 7] = [
    NAME,
    col(
        "Type",
        "string",
        "How the service is exposed, such as ClusterIP or NodePort.",
    ),
    col(
        "Cluster-IP",
        "string",
        "Virtual IP address of the service inside the cluster.",
    ),
    col(
        "External-IP",
        "string",
        "Addresses outside the cluster at which the service can be reached.",
    ),
    col(
        "Port(s)",
        "string",
        "Ports the service exposes, with their protocols.",
    ),
    AGE,
    wide(
        "Selector",
        "string",
        "Label selector picking the pods that receive the service's traffic.",
    ),
];

pub(super) static ENDPOINTS: [Column; 3] = [
    NAME,
    col(
        "Endpoints",
        "string",
        "Addresses and ports of the backends behind the service.",
    ),
    AGE,
];

const NODE_ADDRESSES: &str = "Network addresses the node reports for itself.";

pub(super) static NODES: [Column; 10] = [
    NAME,
    col(
        "Status",
        "string",
        "Whether the node is ready and accepting new pods.",
    ),
    col(
        "Roles",
        "string",
        "Roles given to the node through its labels.",
    ),
    AGE,
    col(
        "Version",
        "string",
        "Version of the kubelet running on the node.",
    ),
    wide("Internal-IP", "string", NODE_ADDRESSES),
    wide("External-IP", "string", NODE_ADDRESSES),
    wide(
        "OS-Image",
        "string",
        "Operating system the node says it is running.",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel version the node says it is running.",
    ),
    wide(
        "Container-Runtime",
        "string",
        "Container runtime on the node, with its version.",
    ),
];

pub(super) static NAMESPACES: [Column; 3] = [
    NAME,
    col(
        "Status",
        "string",
        "Current phase of the namespace, such as Active or Terminating.",
    ),
    AGE,
];

pub(super) static CONFIG_MAPS: [Column; 3] = [
    NAME,
    col(
        "Data",
        "string",
        "Number of entries stored in the config map.",
    ),
    AGE,
];

pub(super) static SECRETS: [Column; 4] = [
    NAME,
    col(
        "Type",
        "string",
        "Kind of secret, which says how its contents are meant to be used.",
    ),
    col("Data", "string", "Number of entries stored in the secret."),
    AGE,
];

pub(super) static EVENTS: [Column; 10] = [
    col(
        "Last Seen",
        "string",
        "How long ago the event last happened.",
    ),
    col(
        "Type",
        "string",
        "Severity of the event, such as Normal or Warning.",
    ),
    col(
        "Reason",
        "string",
        "Short code naming why the event happened.",
    ),
    col(
        "Object",
        "string",
        "Kind and name of the object the event concerns.",
    ),
    wide(
        "Subobject",
        "string",
        "Part of the object the event refers to, such as one container.",
    ),
    wide(
        "Source",
        "string",
        "Component that reported the event, and the host it ran on.",
    ),
    col(
        "Message",
        "string",
        "Readable explanation of what happened.",
    ),
    wide(
        "First Seen",
        "string",
        "How long ago the event first happened.",
    ),
    wide("Count", "string", "How many times the event has happened."),
    Column {
        priority: 1,
        ..NAME
    },
];

pub(super) static LEASES: [Column; 3] = [
    NAME,
    col(
        "Holder",
        "string",
        "Identity of whoever currently holds the lease.",
    ),
    AGE,
];

const ACCESS_MODES: &str = "Ways the volume may be mounted, such as read-write by one node.";

pub(super) static PERSISTENT_VOLUMES: [Column; 11] = [
    NAME,
    col(
        "Capacity",
        "string",
        "Amount of storage the volume provides.",
    ),
    col("Access Modes", "string", ACCESS_MODES),
    col(
        "Reclaim Policy",
        "string",
        "What happens to the volume once its claim is released.",
    ),
    col(
        "Status",
        "string",
        "Current phase of the volume, such as Available or Bound.",
    ),
    col(
        "Claim",
        "string",
        "Namespace and name of the claim bound to the volume.",
    ),
    col(
        "StorageClass",
        "string",
        "Storage class the volume belongs to.",
    ),
    col(
        "VolumeAttributesClass",
        "string",
        "Volume attributes class applied to the volume.",
    ),
    col(
        "Reason",
        "string",
        "Short code explaining why the volume failed, if it did.",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "Whether the volume is used as a filesystem or a raw block device.",
    ),
];

pub(super) static PERSISTENT_VOLUME_CLAIMS: [Column; 9] = [
    NAME,
    col(
        "Status",
        "string",
        "Current phase of the claim, such as Pending or Bound.",
    ),
    col(
        "Volume",
        "string",
        "Name of the volume bound to this claim.",
    ),
    col(
        "Capacity",
        "string",
        "Amount of storage the bound volume provides.",
    ),
    col(
        "Access Modes",
        "string",
        "Ways the bound volume may be mounted.",
    ),
    col(
        "StorageClass",
        "string",
        "Storage class requested by the claim.",
    ),
    col(
        "VolumeAttributesClass",
        "string",
        "Volume attributes class requested by the claim.",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "Whether the claim needs a filesystem or a raw block device.",
    ),
];
