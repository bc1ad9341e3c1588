//! The client store: every client's profile and the capability grants services registered.
//! Kept in `stores/auth/clients.json` (mode 0600), rewritten atomically on every change.
//!
//! Saves are group commits: a change is applied in memory at once, then its caller waits until
//! a save that includes it is on disk. One save runs at a time (two fsyncs, on a blocking
//! thread); the callers queued behind it find their changes saved by the next one, whatever
//! their number. A launcher's first start of 100 plugins adds 100 clients in a few saves
//! instead of 100. If a save fails, every change not yet on disk is undone and each of their
//! callers gets the error.
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
use std::convert::Infallible;
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

/// What [`ClientStore::change_client`] does with a client's profile.
#[derive(Debug)]
pub enum ClientChange {
    /// Leaves it as it is.
    Keep,
    /// Stores this profile under the client's ID.
    Put(ClientProfile),
    /// Removes the client and the grants of its capabilities.
    Remove,
}

/// The persistent client store.
pub struct ClientStore {
    path: PathBuf,
    data: RwLock<Current>,
    /// Held by the one save in progress; holds what is on disk.
    writer: tokio::sync::Mutex<Saved>,
    /// Successful saves, for the tests.
    saves: std::sync::atomic::AtomicU64,
}

/// The store as clients see it, and how far its changes got.
struct Current {
    file: StoreFile,
    /// Changes made so far.
    version: u64,
    /// Changes up to this one were undone by a failed save, with this reason.
    failed: (u64, String),
}

/// What the last successful save wrote.
struct Saved {
    version: u64,
    file: StoreFile,
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
            saves: std::sync::atomic::AtomicU64::new(0),
            writer: tokio::sync::Mutex::new(Saved {
                version: 0,
                file: data.clone(),
            }),
            data: RwLock::new(Current {
                file: data,
                version: 0,
                failed: (0, String::new()),
            }),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.data.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Current> {
        self.data.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change`, then returns once it is saved; if the save fails, it is undone.
    async fn modify<R>(&self, change: impl FnOnce(&mut StoreFile) -> R) -> Result<R, StoreError> {
        let (r, mine) = {
            let mut cur = self.write();
            let r = change(&mut cur.file);
            cur.version += 1;
            (r, cur.version)
        };
        self.save_through(mine).await?;
        Ok(r)
    }

    /// Waits for the save in progress, then returns if it included change `mine`, or saves
    /// everything changed so far.
    async fn save_through(&self, mine: u64) -> Result<(), StoreError> {
        let save_error = |reason: String| StoreError::Save {
            path: self.path.clone(),
            reason,
        };
        let mut saved = self.writer.lock().await;
        if saved.version >= mine {
            return Ok(());
        }
        let (json, version, file) = {
            let cur = self.read();
            if mine <= cur.failed.0 {
                return Err(save_error(cur.failed.1.clone()));
            }
            let json = serde_json::to_vec_pretty(&cur.file).map_err(|e| save_error(e.to_string()));
            (json, cur.version, cur.file.clone())
        };
        let path = self.path.clone();
        let written = match json {
            Ok(json) => tokio::task::spawn_blocking(move || {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                write_atomic(&path, &json, PRIVATE_MODE).map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string())),
            Err(e) => Err(e.to_string()),
        };
        match written {
            Ok(()) => {
                *saved = Saved { version, file };
                self.saves
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(reason) => {
                // Undo every change not on disk: this save's, and those made meanwhile (their
                // callers wait behind this one and get the same error).
                let mut cur = self.write();
                cur.file = saved.file.clone();
                cur.failed = (cur.version, reason.clone());
                Err(save_error(reason))
            }
        }
    }

    /// The profile of `id`.
    pub fn get(&self, id: &str) -> Option<ClientProfile> {
        self.read().file.clients.get(id).cloned()
    }

    /// All profiles, sorted by ID.
    pub fn list(&self) -> Vec<ClientProfile> {
        self.read().file.clients.values().cloned().collect()
    }

    /// Decides on the profile of `id` as it is at this moment and applies the decision in the
    /// same step: no other change falls between the check and the write, such as the client
    /// being added, replaced (with a role the caller may not manage) or removed by a
    /// concurrent request. `decide` sees the current profile and returns what to do with it
    /// and a value for the caller, or an error, which leaves the store as it is. A change
    /// returns once it is saved; [`ClientChange::Keep`] at once.
    pub async fn change_client<T, E>(
        &self,
        id: &str,
        decide: impl FnOnce(Option<&ClientProfile>) -> Result<(ClientChange, T), E>,
    ) -> Result<Result<T, E>, StoreError> {
        let (out, through) = {
            let mut cur = self.write();
            let (change, out) = match decide(cur.file.clients.get(id)) {
                Ok(d) => d,
                Err(e) => return Ok(Err(e)),
            };
            match change {
                // The profile stays as the store holds it, as a plain read would find it: no
                // save to wait for (nor a failed one's error to inherit).
                ClientChange::Keep => return Ok(Ok(out)),
                ClientChange::Put(p) => {
                    cur.file.clients.insert(id.to_string(), p);
                    cur.version += 1;
                }
                ClientChange::Remove => {
                    cur.file.grants.remove(id);
                    cur.file.clients.remove(id);
                    cur.version += 1;
                }
            }
            (out, cur.version)
        };
        self.save_through(through).await?;
        Ok(Ok(out))
    }

    /// Adds or replaces a profile.
    pub async fn upsert(&self, profile: ClientProfile) -> Result<(), StoreError> {
        let id = profile.client_id.clone();
        let put = |_: Option<&ClientProfile>| Ok::<_, Infallible>((ClientChange::Put(profile), ()));
        self.change_client(&id, put)
            .await
            .map(|r| r.unwrap_or_else(|e| match e {}))
    }

    /// Removes a client and the grants of its capabilities; false if it did not exist.
    pub async fn remove(&self, id: &str) -> Result<bool, StoreError> {
        let rm = |now: Option<&ClientProfile>| {
            Ok::<_, Infallible>((ClientChange::Remove, now.is_some()))
        };
        self.change_client(id, rm)
            .await
            .map(|r| r.unwrap_or_else(|e| match e {}))
    }

    /// Sets who may call `service`'s `capability`; an empty list removes the grant.
    pub async fn set_grants(
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
        .await
    }

    /// The grants of `service`'s capabilities.
    pub fn grants_of(&self, service: &str) -> BTreeMap<String, Vec<Role>> {
        self.read()
            .file
            .grants
            .get(service)
            .cloned()
            .unwrap_or_default()
    }
}

impl Grants for ClientStore {
    fn granted(&self, service: &str, capability: &str, role: Role) -> bool {
        self.read()
            .file
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

    #[tokio::test]
    async fn persists_across_reopen_with_private_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth/clients.json");
        let s = ClientStore::open(&p).unwrap();
        s.upsert(profile("p1")).await.unwrap();
        s.set_grants("p1", "ping", &[Role::Viewer, Role::Viewer])
            .await
            .unwrap();
        let s2 = ClientStore::open(&p).unwrap();
        assert_eq!(s2.get("p1"), Some(profile("p1")));
        assert!(s2.granted("p1", "ping", Role::Viewer));
        assert!(!s2.granted("p1", "ping", Role::Service));
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert!(s2.remove("p1").await.unwrap());
        assert!(!s2.granted("p1", "ping", Role::Viewer));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_changes_share_saves_and_all_reach_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth/clients.json");
        let s = std::sync::Arc::new(ClientStore::open(&p).unwrap());
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.upsert(profile(&format!("p{i}"))).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let saves = s.saves.load(std::sync::atomic::Ordering::Relaxed);
        assert!(saves < 32, "{saves} saves for 64 concurrent changes");
        let on_disk = ClientStore::open(&p).unwrap();
        assert_eq!(on_disk.list().len(), 64);
    }

    /// Concurrent requests to create one client: exactly one creates it, every other finds
    /// that one's profile, and a removal decided on a profile removes only that profile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_decision_on_a_client_sees_no_change_slip_in_before_it_applies() {
        let d = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(ClientStore::open(&d.path().join("clients.json")).unwrap());
        let tasks: Vec<_> = (0..64u64)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.change_client("x", |now| {
                        Ok::<_, ()>(match now {
                            Some(p) => (ClientChange::Keep, (false, p.generation)),
                            None => {
                                let mut p = profile("x");
                                p.generation = Some(i);
                                (ClientChange::Put(p), (true, Some(i)))
                            }
                        })
                    })
                    .await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap().unwrap().unwrap());
        }
        assert_eq!(outcomes.iter().filter(|(created, _)| *created).count(), 1);
        let kept = s.get("x").unwrap().generation;
        assert!(outcomes.iter().all(|(_, g)| *g == kept), "{outcomes:?}");
        let refused = s
            .change_client("x", |_| Err::<(ClientChange, ()), _>("no"))
            .await
            .unwrap();
        assert_eq!(refused, Err("no"));
        assert!(s.get("x").is_some(), "a refusal changes nothing");
        let removed = s
            .change_client("x", |now| {
                Ok::<_, ()>((ClientChange::Remove, now.is_some()))
            })
            .await
            .unwrap();
        assert_eq!(removed, Ok(true));
        assert_eq!(
            ClientStore::open(&d.path().join("clients.json"))
                .unwrap()
                .get("x"),
            None
        );
    }

    #[tokio::test]
    async fn a_failed_save_undoes_the_change_and_a_later_one_saves_only_what_succeeded() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("auth");
        let p = dir.join("clients.json");
        let s = ClientStore::open(&p).unwrap();
        // The store's folder becomes a file: every save fails.
        std::fs::write(&dir, "not a folder").unwrap();
        let e = s.upsert(profile("lost")).await.unwrap_err();
        assert!(e.to_string().contains("clients.json"), "{e}");
        assert_eq!(s.get("lost"), None, "a change that was not saved is undone");
        assert!(s.set_grants("lost", "ping", &[Role::Viewer]).await.is_err());
        assert!(!s.granted("lost", "ping", Role::Viewer));
        // A decision to change nothing does not inherit the failed save's error.
        let kept = s
            .change_client("lost", |now| {
                Ok::<_, ()>((ClientChange::Keep, now.is_none()))
            })
            .await
            .unwrap();
        assert_eq!(kept, Ok(true));
        std::fs::remove_file(&dir).unwrap();
        s.upsert(profile("kept")).await.unwrap();
        let on_disk = ClientStore::open(&p).unwrap();
        assert_eq!(on_disk.get("kept"), Some(profile("kept")));
        assert_eq!(on_disk.get("lost"), None);
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
