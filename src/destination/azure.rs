//! `azure`: Azure Blob Storage (block blobs) through `object_store`.
//! Credentials: the account key or a SAS token from the config, else the
//! Azure environment (workload identity, managed identity, CLI). Access
//! tier, metadata, keys and checks are shared with S3 (`objects.rs`).

use super::objects::{self, Transfer};
use super::*;
use crate::config::AzureConfig;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::{ClientOptions, ObjectStore};
use std::sync::Arc;

pub struct AzureDestination {
    cfg: AzureConfig,
}

impl AzureDestination {
    pub fn new(cfg: AzureConfig) -> Self {
        AzureDestination { cfg }
    }

    fn store(&self) -> Result<Arc<dyn ObjectStore>, DestinationError> {
        let c = &self.cfg;
        let mut b = MicrosoftAzureBuilder::from_env()
            .with_account(c.account.0.as_str())
            .with_container_name(c.container.0.as_str())
            .with_retry(objects::no_retries())
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(c.timeout.0)
                    .with_connect_timeout(c.timeout.0.min(std::time::Duration::from_secs(30)))
                    .with_allow_http(
                        c.endpoint
                            .as_ref()
                            .is_some_and(|e| e.0.starts_with("http://")),
                    ),
            );
        if let Some(e) = &c.endpoint {
            b = b.with_endpoint(e.0.clone());
        }
        if let Some(k) = &c.access_key {
            b = b.with_access_key(k.expose());
        }
        if let Some(sas) = &c.sas_token {
            let pairs: Vec<(String, String)> =
                url::form_urlencoded::parse(sas.expose().trim_start_matches('?').as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
            b = b.with_sas_authorization(pairs);
        }
        let store = b
            .build()
            .map_err(|e| objects::classify(&e, "Azure client"))?;
        Ok(Arc::new(store))
    }

    fn transfer(&self) -> Transfer {
        Transfer {
            multipart_threshold: self.cfg.multipart_threshold.0,
            part_size: self.cfg.part_size.0,
            storage_class: self.cfg.access_tier.clone(),
            etag_is_md5: false,
        }
    }
}

impl Destination for AzureDestination {
    fn describe(&self) -> String {
        let at = objects::at(self.cfg.endpoint.as_ref());
        format!(
            "azure://{}/{}{at}",
            self.cfg.account.0, self.cfg.container.0
        )
    }

    fn deliver(&self, shipment: &Shipment) -> Result<Receipt, DestinationError> {
        let store = self.store()?;
        let opts = self.cfg.object();
        objects::deliver_all(&store, &self.transfer(), &opts, shipment, &self.describe())
    }

    fn check(&self) -> Result<String, DestinationError> {
        objects::check(&self.store()?, &self.cfg.object(), &self.describe())
    }
}
