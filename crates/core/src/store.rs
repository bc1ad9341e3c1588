//! The client store: every client's profile and the capability grants services registered.
//! Kept in `stores/auth/clients.json` (mode 0600), rewritten atomically on every change.
//!
//! A grant maps a service's own capability to the roles that may call it
//! (`HubClient::set_permissions`, over `authz/setPermissions`). Nothing is granted by default:
//! until a service registers a grant, only admin may call it. Grants survive restarts and go
//! with the service when it is removed. A missing file is an empty store; an unreadable or
//! corrupt one stops the core with a message and is never overwritten.

use hivehub_api::auth::ClientProfile;
use hivehub_api::Role;
use hivehub_auth::Grants;
use hivehub_home::{write_atomic, PRIVATE_MODE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// Version of the store file format.
const STORE_VERSION: u32 = 1;

/// Errors of the client store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists but cannot be read or parsed. It is left untouched.
    #[error("client store {path} is unreadable or corrupt ({reason}); fix or move it away; it was not modified")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file could not be written.
    #[error("cannot save client store {path}: {reason}")]
    Save {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoreFile {
    version: u32,
    clients: BTreeMap<String, ClientProfile>,
    /// service → capability → roles
    grants: BTreeMap<String, BTreeMap<String, Vec<Role>>>,
}

/// The persistent client store.
pub struct ClientStore {
    path: PathBuf,
    data: RwLock<StoreFile>,
}

impl ClientStore {
    /// Opens the store; a missing file is an empty store, a corrupt one an error.
    pub fn open(path: &Path) -> Result<ClientStore, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let data = match std::fs::read(path) {
            Ok(bytes) => {
                let f: StoreFile =
                    serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
                if f.version != STORE_VERSION {
                    return Err(corrupt(format!(
                        "format version {} is not the supported {STORE_VERSION}",
                        f.version
                    )));
                }
                f
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoreFile {
                version: STORE_VERSION,
                ..Default::default()
            },
            Err(e) => return Err(corrupt(e.to_string())),
        };
        Ok(ClientStore {
            path: path.to_path_buf(),
            data: RwLock::new(data),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, StoreFile> {
        self.data.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change` and saves; on a save error the in-memory state is rolled back.
    fn modify<R>(&self, change: impl FnOnce(&mut StoreFile) -> R) -> Result<R, StoreError> {
        let mut guard = self.data.write().unwrap_or_else(|p| p.into_inner());
        let before = guard.clone();
        let r = change(&mut guard);
        let json = serde_json::to_vec_pretty(&*guard).map_err(|e| StoreError::Save {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = write_atomic(&self.path, &json, PRIVATE_MODE) {
            *guard = before;
            return Err(StoreError::Save {
                path: self.path.clone(),
                reason: e.to_string(),
            });
        }
        Ok(r)
    }

    /// The profile of `id`.
    pub fn get(&self, id: &str) -> Option<ClientProfile> {
        self.read().clients.get(id).cloned()
    }

    /// All profiles, sorted by ID.
    pub fn list(&self) -> Vec<ClientProfile> {
        self.read().clients.values().cloned().collect()
    }

    /// Adds or replaces a profile.
    pub fn upsert(&self, profile: ClientProfile) -> Result<(), StoreError> {
        self.modify(|f| {
            f.clients.insert(profile.client_id.clone(), profile);
        })
    }

    /// Removes a client and the grants of its capabilities; false if it did not exist.
    pub fn remove(&self, id: &str) -> Result<bool, StoreError> {
        self.modify(|f| {
            f.grants.remove(id);
            f.clients.remove(id).is_some()
        })
    }

    /// Sets who may call `service`'s `capability`; an empty list removes the grant.
    pub fn set_grants(
        &self,
        service: &str,
        capability: &str,
        roles: &[Role],
    ) -> Result<(), StoreError> {
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        self.modify(|f| {
            let caps = f.grants.entry(service.to_string()).or_default();
            if roles.is_empty() {
                caps.remove(capability);
            } else {
                caps.insert(capability.to_string(), roles);
            }
            if caps.is_empty() {
                f.grants.remove(service);
            }
        })
    }

    /// The grants of `service`'s capabilities.
    pub fn grants_of(&self, service: &str) -> BTreeMap<String, Vec<Role>> {
        self.read().grants.get(service).cloned().unwrap_or_default()
    }
}

impl Grants for ClientStore {
    fn granted(&self, service: &str, capability: &str, role: Role) -> bool {
        self.read()
            .grants
            .get(service)
            .and_then(|c| c.get(capability))
            .is_some_and(|roles| roles.contains(&role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hivehub_api::ClientType;
    use std::os::unix::fs::MetadataExt;

    fn profile(id: &str) -> ClientProfile {
        ClientProfile {
            client_id: id.into(),
            client_type: ClientType::Service,
            display_name: id.into(),
            role: Role::Service,
            pub_key: "k".into(),
            created: 1,
            updated: 1,
            created_by: None,
            plugin: false,
            generation: None,
        }
    }

    #[test]
    fn persists_across_reopen_with_private_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth/clients.json");
        let s = ClientStore::open(&p).unwrap();
        s.upsert(profile("p1")).unwrap();
        s.set_grants("p1", "ping", &[Role::Viewer, Role::Viewer])
            .unwrap();
        let s2 = ClientStore::open(&p).unwrap();
        assert_eq!(s2.get("p1"), Some(profile("p1")));
        assert!(s2.granted("p1", "ping", Role::Viewer));
        assert!(!s2.granted("p1", "ping", Role::Service));
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert!(s2.remove("p1").unwrap());
        assert!(!s2.granted("p1", "ping", Role::Viewer));
    }

    #[test]
    fn corrupt_store_is_an_error_and_untouched() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("clients.json");
        std::fs::write(&p, "{not json").unwrap();
        let e = ClientStore::open(&p).err().unwrap();
        assert!(e.to_string().contains("clients.json"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{not json");
    }
}
