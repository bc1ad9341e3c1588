//! A plugin's credentials and identity environment: its key and token, minted through the
//! auth service before every start, and the `HIVEHUB_*` variables it finds them with.
//!
//! With `createPluginCred` (the default), every start first creates `certs/{name}.key` if it
//! is missing, calls `auth/clients/addClient` (role and type `service`) and writes the token to
//! `certs/{name}.token` (0400, replaced whole; not fsynced: it is minted again at every start). That needs the bus: without it the start fails.
//! The core refuses (`conflict`) to re-key a client that no launcher created, so a plugin named
//! like a user, device or another launcher fails to start. A move mints the credentials on the
//! target before the source stops, so the gap is only the spawn. An automatic restart (after
//! an exit or a threshold) does not wait for the bus: it reuses the key and token this launcher
//! minted for the plugin while that token has more than half its life left (service tokens
//! live 90 days by default), so a crash loop costs the core nothing and a restart nothing but
//! the spawn.

use super::*;

impl Supervisor {
    /// Mints the plugin's credentials now, so its next start skips that step.
    pub async fn prepare_credentials(&self, name: &str) -> Result<(), LaunchError> {
        let slot = self.slot(name)?;
        if !self.cfg().create_plugin_cred {
            return Ok(());
        }
        self.mint_credentials(name)
            .await
            .map_err(|reason| LaunchError::StartFailed {
                name: name.to_string(),
                reason,
            })?;
        lock(&slot.st).creds_fresh = true;
        Ok(())
    }

    pub(super) async fn mint_credentials(&self, name: &str) -> Result<(), String> {
        let bus = lock(&self.sh.bus)
            .clone()
            .ok_or("not connected to the hub, so its credentials cannot be created")?;
        let key_path = self.sh.home.key_file(name);
        // A new key is made durable (two fsyncs): on the blocking pool, so that a cold start's
        // concurrent mints neither hold the runtime's two workers nor wait for each other. Only
        // the public half is needed here, read without deriving it (see `load_or_create_public`).
        let (pub_key, _) = self
            .spawn_blocking(move || hivehub_auth::keys::load_or_create_public(&key_path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let resp: AddClientResp = bus
            .request(
                AUTH_SERVICE,
                CAP_CLIENTS,
                methods::ADD_CLIENT,
                &AddClientReq {
                    client_id: name.to_string(),
                    client_type: Some(ClientType::Service),
                    display_name: Some(name.to_string()),
                    role: Role::Service,
                    pub_key,
                },
            )
            .await
            .map_err(|e| format!("the auth service refused its credentials: {e}"))?;
        let token_path = self.sh.home.token_file(name);
        // Replaced whole but not synced: a token lost to a power cut is minted again at the
        // next start (as at every start), and meanwhile the plugin can log in with its key.
        write_replace(&token_path, resp.token.as_bytes(), SECRET_MODE)
            .map_err(|e| format!("cannot write {}: {e}", token_path.display()))?;
        if let Ok(slot) = self.slot(name) {
            lock(&slot.st).creds_minted = Some((now_ms(SystemTime::now()), resp.expires));
        }
        Ok(())
    }

    /// True when an automatic restart may reuse the credentials minted earlier: they were
    /// minted by this launcher, their token has more than half its life left, and both files
    /// are still there.
    pub(super) fn creds_reusable(&self, name: &str, st: &Run) -> bool {
        let Some((minted, expires)) = st.creds_minted else {
            return false;
        };
        let now = now_ms(SystemTime::now());
        let half_life = minted.saturating_add(expires.saturating_sub(minted) / 2);
        now < half_life
            && self.sh.home.key_file(name).exists()
            && self.sh.home.token_file(name).exists()
    }

    pub(super) fn env_for(&self, name: &str, pc: &PluginConfig) -> Vec<(String, String)> {
        let mut env = vec![
            (
                ENV_HOME.to_string(),
                self.sh.home.root().display().to_string(),
            ),
            (ENV_CLIENT_ID.to_string(), name.to_string()),
            (ENV_LOG_LEVEL.to_string(), self.cfg().loglevel.clone()),
        ];
        if let Some(url) = lock(&self.sh.server_url).clone() {
            env.push((ENV_SERVER.to_string(), url));
        }
        env.extend(pc.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }
}
