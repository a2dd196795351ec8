//! `/v1/status/leader` and `/v1/status/peers`, answered by the store: the embedded
//! store is served by this agent alone; on etcd, the leader is the etcd member that
//! orders writes and the peers are the members that answered (no leader when there is
//! no quorum, as Consul answers `""` without a Raft leader).

use crate::{ApiResult, Shared};
use axum::extract::State;
use axum::Json;

pub(crate) async fn leader(State(state): State<Shared>) -> ApiResult<Json<String>> {
    let own = state.advertise();
    Ok(Json(state.store.membership(&own).await?.leader))
}

pub(crate) async fn peers(State(state): State<Shared>) -> ApiResult<Json<Vec<String>>> {
    let own = state.advertise();
    Ok(Json(state.store.membership(&own).await?.peers))
}
