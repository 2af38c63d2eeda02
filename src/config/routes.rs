//! `[chartmuseum]`: the flags ChartMuseum runs with that decide its route
//! table (depth, context path, disabled APIs), mirrored here.

use anyhow::{anyhow, ensure, Result};

use super::raw::RawChartmuseum;
use crate::auth::path;
use crate::auth::route::RouteOptions;

impl RawChartmuseum {
    /// # Errors
    /// The first invalid `chartmuseum.*` key, by name.
    pub fn validate(self) -> Result<RouteOptions> {
        ensure!(
            self.depth <= 16,
            "chartmuseum.depth must be at most 16, got {}",
            self.depth
        );
        // ChartMuseum's own normalisation (docs/PROTOCOL.md §3.1).
        let context_path = match self.context_path.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => None,
            Some(p) => {
                let p = format!("/{p}");
                path::check(&p).map_err(|e| anyhow!("chartmuseum.context_path {p:?}: {e}"))?;
                Some(p)
            }
        };
        Ok(RouteOptions {
            depth: self.depth,
            context_path,
            api: !self.disable_api,
            delete: !self.disable_delete,
            artifact_hub: self.artifact_hub,
        })
    }
}
