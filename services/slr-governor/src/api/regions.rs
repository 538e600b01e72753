//! RegionService: where Amazon Connect is available.

use std::sync::Arc;

use slrgov_domain::Violations;
use slrgov_domain::names::parse_region_name;
use slrgov_domain::types::RegionCode;
use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::region_service_server::RegionService;
use slrgov_store::PageRequest;
use slrgov_store::page_token::query_digest;
use tonic::{Request, Response, Status};

use super::{AppState, accepted, handle};
use crate::caller::context;
use crate::regions::{RegionEntry, RegionSource};

/// The RegionService implementation.
#[derive(Debug, Clone)]
pub struct Regions {
    state: Arc<AppState>,
}

impl Regions {
    /// Serves regions from `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Regions { state }
    }
}

fn region(entry: &RegionEntry) -> pb::Region {
    pb::Region {
        name: format!("regions/{}", entry.code),
        region_code: entry.code.to_string(),
        partition: entry.partition.to_string(),
        connect_available: entry.connect_available,
        source: match entry.source {
            RegionSource::Builtin => pb::region::Source::Builtin,
            RegionSource::Config => pb::region::Source::Config,
            RegionSource::Ssm => pb::region::Source::Ssm,
        } as i32,
        refresh_time: entry.refresh_time.map(crate::convert::timestamp),
    }
}

#[tonic::async_trait]
impl RegionService for Regions {
    async fn list_regions(
        &self,
        request: Request<pb::ListRegionsRequest>,
    ) -> Result<Response<pb::ListRegionsResponse>, Status> {
        let ctx = context(&request, "ListRegions");
        let pb::ListRegionsRequest {
            page_size,
            page_token,
        } = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let page = v.check("page_size", PageRequest::parse(page_size, &page_token));
            v.finish()?;
            let page = accepted(page)?;
            let store = self.state.store()?;
            let keys = store.page_tokens();
            let digest = query_digest(&["ListRegions"]);
            let after = match &page.token {
                Some(token) => {
                    let key = keys
                        .open(token, &digest, 1)
                        .map_err(|e| e.on("page_token"))?;
                    Some(key.into_iter().next().unwrap_or_default())
                }
                None => None,
            };
            let mut regions: Vec<pb::Region> = self
                .state
                .regions
                .after(after.as_deref(), page.size as usize + 1)
                .iter()
                .map(region)
                .collect();
            let mut next_page_token = String::new();
            if regions.len() > page.size as usize {
                regions.truncate(page.size as usize);
                if let Some(last) = regions.last() {
                    next_page_token = keys.seal(&digest, vec![last.region_code.clone()]);
                }
            }
            Ok(pb::ListRegionsResponse {
                regions,
                next_page_token,
            })
        })
        .await
    }

    async fn get_region(
        &self,
        request: Request<pb::GetRegionRequest>,
    ) -> Result<Response<pb::Region>, Status> {
        let ctx = context(&request, "GetRegion");
        let pb::GetRegionRequest { name } = request.into_inner();
        handle(&self.state, &ctx, async {
            let code: RegionCode = parse_region_name(&name).map_err(|e| e.on("name"))?;
            Ok(match self.state.regions.get(&code) {
                Some(entry) => region(&entry),
                // A well-formed code the table does not know: Connect is not
                // available there (as far as this service will act).
                None => pb::Region {
                    name: format!("regions/{code}"),
                    region_code: code.to_string(),
                    partition: code.partition().to_string(),
                    connect_available: false,
                    source: pb::region::Source::Builtin as i32,
                    refresh_time: None,
                },
            })
        })
        .await
    }
}
