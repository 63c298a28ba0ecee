//! `s3`: Amazon S3 and S3-compatible stores through `object_store`.
//! Credentials: static keys from the config, else the AWS environment,
//! web identity, container and instance-profile providers. Uploads, keys,
//! metadata and checks are shared with Azure (`objects.rs`).

use super::objects::{self, Transfer};
use super::*;
use crate::config::S3Config;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, Checksum};
use object_store::{ClientOptions, ObjectStore};
use std::sync::Arc;

pub struct S3Destination {
    cfg: S3Config,
}

impl S3Destination {
    pub fn new(cfg: S3Config) -> Self {
        S3Destination { cfg }
    }

    fn store(&self) -> Result<Arc<dyn ObjectStore>, DestinationError> {
        let c = &self.cfg;
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(c.bucket.0.as_str())
            .with_retry(objects::no_retries())
            .with_checksum_algorithm(Checksum::SHA256)
            .with_virtual_hosted_style_request(c.virtual_hosted_style)
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
        if let Some(r) = &c.region {
            b = b.with_region(r.0.as_str());
        }
        if let Some(e) = &c.endpoint {
            b = b.with_endpoint(e.0.as_str());
        }
        if let (Some(id), Some(secret)) = (&c.access_key_id, &c.secret_access_key) {
            b = b
                .with_access_key_id(id.expose())
                .with_secret_access_key(secret.expose());
            // Static keys replace whatever token the environment holds.
            b = b.with_config(
                AmazonS3ConfigKey::Token,
                c.session_token.as_ref().map_or("", |t| t.expose()),
            );
        }
        if let Some(sse) = &c.sse {
            let key: AmazonS3ConfigKey = "aws_server_side_encryption".parse().map_err(|e| {
                DestinationError::new(ErrorClass::Permanent, format!("S3 client: {e}"))
            })?;
            b = b.with_config(key, sse.as_str());
            if let Some(k) = &c.kms_key_id {
                b = b.with_sse_kms_encryption(k.as_str());
            }
        }
        let store = b.build().map_err(|e| objects::classify(&e, "S3 client"))?;
        Ok(Arc::new(store))
    }

    fn transfer(&self) -> Transfer {
        Transfer {
            multipart_threshold: self.cfg.multipart_threshold.0,
            part_size: self.cfg.part_size.0,
            storage_class: self.cfg.storage_class.clone(),
            etag_is_md5: self.cfg.sse.as_deref() != Some("aws:kms"),
        }
    }
}

impl Destination for S3Destination {
    fn describe(&self) -> String {
        let at = objects::at(self.cfg.endpoint.as_ref());
        format!("s3://{}{at}", self.cfg.bucket.0)
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
