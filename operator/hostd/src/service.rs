//! The gRPC service `hakube.hostd.v1.Hostd` and the check of who may call it.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use hakube_hostd_api::v1 as api;
use hakube_hostd_api::v1::hostd_server::Hostd;
use openssl::nid::Nid;
use openssl::x509::X509;
use tonic::{Request, Response, Status};

use crate::bundles::{BundleError, BundleInfo, BundleStore};
use crate::facts::FactsGatherer;
use crate::files::{self, FileError};
use crate::paths::AllowedPaths;
use crate::units::logs;
use crate::units::spec::{SpecContext, UnitSpec};
use crate::units::{UnitError, UnitManager};

const DEFAULT_LOG_TAIL_BYTES: u32 = 64 * 1024;
const MAX_LOG_TAIL_BYTES: u32 = 1024 * 1024;

/// Lets through requests whose client certificate (already verified against the client CA
/// during the TLS handshake) has one of the authorised common names.
#[derive(Clone)]
pub struct ClientAuthorizer {
    common_names: Arc<Vec<String>>,
}

impl ClientAuthorizer {
    pub fn new(common_names: Vec<String>) -> Self {
        ClientAuthorizer {
            common_names: Arc::new(common_names),
        }
    }
}

impl tonic::service::Interceptor for ClientAuthorizer {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let certificates = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let leaf = certificates
            .first()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let common_name = common_name(leaf.as_ref())
            .ok_or_else(|| Status::permission_denied("client certificate has no common name"))?;
        if self.common_names.contains(&common_name) {
            Ok(request)
        } else {
            tracing::warn!(client = %common_name, "refused a client that is not authorised");
            Err(Status::permission_denied(format!(
                "client {common_name:?} is not authorised"
            )))
        }
    }
}

fn common_name(der: &[u8]) -> Option<String> {
    let certificate = X509::from_der(der).ok()?;
    let entry = certificate
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()?;
    entry.data().to_string().ok()
}

pub struct HostdService {
    pub data_dir: PathBuf,
    pub allowed_paths: AllowedPaths,
    pub units: Arc<UnitManager>,
    pub bundles: Arc<BundleStore>,
    pub facts: Arc<FactsGatherer>,
    /// True once hostd is shutting down.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// One caller's watch of the units.
struct UnitsWatch {
    units: Arc<UnitManager>,
    changes: tokio::sync::watch::Receiver<()>,
    stopping: tokio::sync::watch::Receiver<bool>,
    first: bool,
}

impl UnitsWatch {
    /// The units now, the first time; then after the next change. None once hostd stops.
    async fn next(&mut self) -> Option<Vec<api::UnitStatus>> {
        if !std::mem::take(&mut self.first) {
            tokio::select! {
                changed = self.changes.changed() => changed.ok()?,
                _ = self.stopping.wait_for(|stopping| *stopping) => return None,
            }
        }
        if *self.stopping.borrow() {
            return None;
        }
        Some(self.units.list())
    }
}

fn unit_status(error: UnitError) -> Status {
    match &error {
        UnitError::NotFound(_) => Status::not_found(error.to_string()),
        UnitError::BundleMissing { .. } | UnitError::BundleProgramMissing { .. } => {
            Status::failed_precondition(error.to_string())
        }
        UnitError::Persist { .. } | UnitError::SupervisorGone(_) => {
            Status::internal(error.to_string())
        }
    }
}

fn bundle_status(error: BundleError) -> Status {
    match &error {
        BundleError::InvalidVersion(_)
        | BundleError::InvalidSha256(_)
        | BundleError::NotHttps(_) => Status::invalid_argument(error.to_string()),
        BundleError::Conflict { .. } => Status::already_exists(error.to_string()),
        BundleError::Mismatch { .. } => Status::data_loss(error.to_string()),
        BundleError::InUse { .. } => Status::failed_precondition(error.to_string()),
        BundleError::Download { .. }
        | BundleError::Status { .. }
        | BundleError::Transfer { .. } => Status::unavailable(error.to_string()),
        BundleError::Unpack { .. } | BundleError::Io { .. } => Status::internal(error.to_string()),
    }
}

fn file_status(error: FileError) -> Status {
    match &error {
        FileError::InvalidMode(_) | FileError::NoParent(_) => {
            Status::invalid_argument(error.to_string())
        }
        FileError::Io { .. } => Status::internal(error.to_string()),
    }
}

fn bundle_to_api(bundles: &BundleStore, info: BundleInfo) -> api::Bundle {
    api::Bundle {
        path: bundles.path(&info.version).display().to_string(),
        version: info.version,
        sha256: info.sha256,
        archive_bytes: info.archive_bytes,
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("file operation ended abnormally: {e}")))?
}

#[tonic::async_trait]
impl Hostd for HostdService {
    async fn get_facts(
        &self,
        _request: Request<api::GetFactsRequest>,
    ) -> Result<Response<api::Facts>, Status> {
        Ok(Response::new(self.facts.gather().await))
    }

    async fn write_file(
        &self,
        request: Request<api::WriteFileRequest>,
    ) -> Result<Response<api::WriteFileResponse>, Status> {
        let request = request.into_inner();
        let path = self
            .allowed_paths
            .check(&request.path)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let changed = blocking(move || {
            files::write_atomically(&path, &request.content, request.mode).map_err(file_status)
        })
        .await?;
        if changed {
            tracing::info!(path = %request.path, mode = format!("{:o}", request.mode), "wrote file");
        }
        Ok(Response::new(api::WriteFileResponse { changed }))
    }

    async fn remove_path(
        &self,
        request: Request<api::RemovePathRequest>,
    ) -> Result<Response<api::RemovePathResponse>, Status> {
        let request = request.into_inner();
        let path = self
            .allowed_paths
            .check(&request.path)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let removed = blocking(move || files::remove_path(&path).map_err(file_status)).await?;
        if removed {
            tracing::info!(path = %request.path, "removed");
        }
        Ok(Response::new(api::RemovePathResponse { removed }))
    }

    async fn ensure_unit(
        &self,
        request: Request<api::EnsureUnitRequest>,
    ) -> Result<Response<api::EnsureUnitResponse>, Status> {
        let spec = request
            .into_inner()
            .spec
            .ok_or_else(|| Status::invalid_argument("spec is missing"))?;
        let spec = UnitSpec::from_api(
            &spec,
            &SpecContext {
                data_dir: &self.data_dir,
                allowed_paths: &self.allowed_paths,
            },
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (action, status) = self.units.ensure(spec).await.map_err(unit_status)?;
        Ok(Response::new(api::EnsureUnitResponse {
            action: action as i32,
            status: Some(status),
        }))
    }

    async fn stop_unit(
        &self,
        request: Request<api::StopUnitRequest>,
    ) -> Result<Response<api::UnitStatus>, Status> {
        let status = self
            .units
            .stop(&request.into_inner().name)
            .await
            .map_err(unit_status)?;
        Ok(Response::new(status))
    }

    async fn remove_unit(
        &self,
        request: Request<api::RemoveUnitRequest>,
    ) -> Result<Response<api::RemoveUnitResponse>, Status> {
        let removed = self
            .units
            .remove(&request.into_inner().name)
            .await
            .map_err(unit_status)?;
        Ok(Response::new(api::RemoveUnitResponse { removed }))
    }

    async fn list_units(
        &self,
        _request: Request<api::ListUnitsRequest>,
    ) -> Result<Response<api::ListUnitsResponse>, Status> {
        Ok(Response::new(api::ListUnitsResponse {
            units: self.units.list(),
        }))
    }

    type WatchUnitsStream =
        Pin<Box<dyn Stream<Item = Result<api::ListUnitsResponse, Status>> + Send + 'static>>;

    async fn watch_units(
        &self,
        _request: Request<api::WatchUnitsRequest>,
    ) -> Result<Response<Self::WatchUnitsStream>, Status> {
        let watch = UnitsWatch {
            units: self.units.clone(),
            changes: self.units.subscribe(),
            stopping: self.stopping.clone(),
            first: true,
        };
        let stream = futures::stream::unfold(watch, |mut watch| async move {
            let units = watch.next().await?;
            Some((Ok(api::ListUnitsResponse { units }), watch))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn read_unit_log(
        &self,
        request: Request<api::ReadUnitLogRequest>,
    ) -> Result<Response<api::ReadUnitLogResponse>, Status> {
        let request = request.into_inner();
        let log_file = self.units.log_file(&request.name).map_err(unit_status)?;
        let tail_bytes = match request.tail_bytes {
            0 => DEFAULT_LOG_TAIL_BYTES,
            n => n.min(MAX_LOG_TAIL_BYTES),
        };
        let content = blocking(
            move || match logs::read_tail(&log_file, tail_bytes.into()) {
                Ok(content) => Ok(content),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(Status::internal(format!(
                    "reading {}: {e}",
                    log_file.display()
                ))),
            },
        )
        .await?;
        Ok(Response::new(api::ReadUnitLogResponse { content }))
    }

    async fn fetch_bundle(
        &self,
        request: Request<api::FetchBundleRequest>,
    ) -> Result<Response<api::FetchBundleResponse>, Status> {
        let request = request.into_inner();
        let (info, downloaded) = self
            .bundles
            .fetch(&request.version, &request.url, &request.sha256)
            .await
            .map_err(|e| {
                tracing::warn!("{e}");
                bundle_status(e)
            })?;
        Ok(Response::new(api::FetchBundleResponse {
            bundle: Some(bundle_to_api(&self.bundles, info)),
            downloaded,
        }))
    }

    async fn list_bundles(
        &self,
        _request: Request<api::ListBundlesRequest>,
    ) -> Result<Response<api::ListBundlesResponse>, Status> {
        let bundles = self.bundles.clone();
        let infos = blocking(move || Ok(bundles.list())).await?;
        Ok(Response::new(api::ListBundlesResponse {
            bundles: infos
                .into_iter()
                .map(|info| bundle_to_api(&self.bundles, info))
                .collect(),
        }))
    }

    async fn remove_bundle(
        &self,
        request: Request<api::RemoveBundleRequest>,
    ) -> Result<Response<api::RemoveBundleResponse>, Status> {
        let version = request.into_inner().version;
        let used_by = self.units.units_using_bundle(&version);
        let removed = self
            .bundles
            .remove(&version, used_by)
            .await
            .map_err(bundle_status)?;
        Ok(Response::new(api::RemoveBundleResponse { removed }))
    }
}
