//! `AutomationService` (proto/automation.proto; docs/protocol.md, 7.5): wallet sign-in and
//! the caller's automation definitions. Every call but the sign-in pair needs
//! `authorization: Bearer <token>`.

use std::sync::Arc;

use alloy::primitives::Address;
use avs_proto::automation_v1 as pb;
use avs_proto::automation_v1::automation_service_server::AutomationService;
use tonic::{Request, Response, Status};

use crate::automation::auth::AuthError;
use crate::automation::{Automation, AutomationError, TaskId, parse_id};
use crate::node::now_ms;

pub struct AutomationApi {
    automation: Arc<Automation>,
    /// Open `SyncMessages` streams, bounded.
    streams: Arc<tokio::sync::Semaphore>,
}

/// `SyncMessages` streams open at once; more are refused with `RESOURCE_EXHAUSTED`.
pub const MAX_SYNC_STREAMS: usize = 64;

impl AutomationApi {
    pub fn new(automation: Arc<Automation>) -> Self {
        Self { automation, streams: Arc::new(tokio::sync::Semaphore::new(MAX_SYNC_STREAMS)) }
    }

    /// The owner the request's bearer token names.
    fn owner<T>(&self, request: &Request<T>) -> Result<Address, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("no authorization metadata; call GetKey"))?;
        let token =
            header.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).ok_or_else(|| {
                Status::unauthenticated("authorization must be \"Bearer <token>\"")
            })?;
        self.automation.authenticate(token, now_ms()).map_err(status)
    }

    /// Runs a store operation off the async workers (writes wait for an fsync).
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Automation) -> Result<T, AutomationError> + Send + 'static,
    ) -> Result<T, Status> {
        let automation = Arc::clone(&self.automation);
        tokio::task::spawn_blocking(move || work(&automation))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status)
    }
}

fn status(error: AutomationError) -> Status {
    let message = error.to_string();
    match error {
        AutomationError::Auth(AuthError::TooManyChallenges)
        | AutomationError::Full
        | AutomationError::Busy => Status::resource_exhausted(message),
        AutomationError::Auth(_) | AutomationError::NoSession => Status::unauthenticated(message),
        AutomationError::Invalid(_) | AutomationError::BadRequest(_) => {
            Status::invalid_argument(message)
        }
        AutomationError::NotFound(_) => Status::not_found(message),
        AutomationError::NotYours(_) => Status::permission_denied(message),
        AutomationError::WrongState { .. } | AutomationError::Unwatched(_) => {
            Status::failed_precondition(message)
        }
        AutomationError::Store(_) | AutomationError::Corrupt(_) => Status::internal(message),
    }
}

fn id_of(raw: &[u8]) -> Result<TaskId, Status> {
    parse_id(raw).map_err(status)
}

#[tonic::async_trait]
impl AutomationService for AutomationApi {
    async fn get_challenge(
        &self,
        request: Request<pb::GetChallengeRequest>,
    ) -> Result<Response<pb::GetChallengeResponse>, Status> {
        let owner = request.into_inner().owner;
        if owner.len() != 20 {
            return Err(Status::invalid_argument(format!(
                "owner has {} bytes, an address has 20",
                owner.len()
            )));
        }
        let (message, expires_at_ms) =
            self.automation.challenge(Address::from_slice(&owner), now_ms()).map_err(status)?;
        Ok(Response::new(pb::GetChallengeResponse { message, expires_at_ms }))
    }

    async fn get_key(
        &self,
        request: Request<pb::GetKeyRequest>,
    ) -> Result<Response<pb::GetKeyResponse>, Status> {
        let request = request.into_inner();
        // The grant is written durably: off the async workers.
        let (token, expires_at_ms) = self
            .blocking(move |a| a.sign_in(&request.message, &request.signature, now_ms()))
            .await?;
        Ok(Response::new(pb::GetKeyResponse { token, expires_at_ms }))
    }

    async fn create_task(
        &self,
        request: Request<pb::CreateTaskRequest>,
    ) -> Result<Response<pb::AutomationTask>, Status> {
        let owner = self.owner(&request)?;
        let definition = request
            .into_inner()
            .definition
            .ok_or_else(|| Status::invalid_argument("definition: missing"))?;
        let task = self.blocking(move |a| a.create(owner, definition, now_ms())).await?;
        Ok(Response::new(task))
    }

    async fn get_task(
        &self,
        request: Request<pb::TaskIdRequest>,
    ) -> Result<Response<pb::AutomationTask>, Status> {
        let owner = self.owner(&request)?;
        let id = id_of(&request.into_inner().id)?;
        Ok(Response::new(self.blocking(move |a| a.get(&owner, &id)).await?))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let owner = self.owner(&request)?;
        let request = request.into_inner();
        let after = match request.page_token.as_slice() {
            [] => None,
            raw => Some(id_of(raw).map_err(|_| Status::invalid_argument("bad page_token"))?),
        };
        let page = usize::try_from(request.page_size).unwrap_or(usize::MAX);
        let (tasks, next) = self.blocking(move |a| a.list(&owner, after, page)).await?;
        Ok(Response::new(pb::ListTasksResponse {
            tasks,
            next_page_token: next.map(|id| id.to_vec()).unwrap_or_default(),
        }))
    }

    async fn cancel_task(
        &self,
        request: Request<pb::TaskIdRequest>,
    ) -> Result<Response<pb::AutomationTask>, Status> {
        let owner = self.owner(&request)?;
        let id = id_of(&request.into_inner().id)?;
        Ok(Response::new(self.blocking(move |a| a.cancel(&owner, &id, now_ms())).await?))
    }

    async fn list_executions(
        &self,
        request: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        let owner = self.owner(&request)?;
        let request = request.into_inner();
        let id = id_of(&request.id)?;
        let after = match request.page_token.as_slice() {
            [] => None,
            raw => Some(u64::from_be_bytes(
                raw.try_into().map_err(|_| Status::invalid_argument("bad page_token"))?,
            )),
        };
        let page = usize::try_from(request.page_size).unwrap_or(usize::MAX);
        let (executions, next) =
            self.blocking(move |a| a.list_executions(&owner, &id, after, page)).await?;
        Ok(Response::new(pb::ListExecutionsResponse {
            executions,
            next_page_token: next.map(|at| at.to_be_bytes().to_vec()).unwrap_or_default(),
        }))
    }

    async fn get_execution(
        &self,
        request: Request<pb::ExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let owner = self.owner(&request)?;
        let request = request.into_inner();
        let (id, key) = (id_of(&request.id)?, request.key);
        Ok(Response::new(self.blocking(move |a| a.get_execution(&owner, &id, key)).await?))
    }

    async fn get_execution_status(
        &self,
        request: Request<pb::ExecutionRequest>,
    ) -> Result<Response<pb::ExecutionStatusResponse>, Status> {
        let owner = self.owner(&request)?;
        let request = request.into_inner();
        let (id, key) = (id_of(&request.id)?, request.key);
        let execution = self.blocking(move |a| a.get_execution(&owner, &id, key)).await?;
        Ok(Response::new(pb::ExecutionStatusResponse { status: execution.status }))
    }

    async fn get_execution_count(
        &self,
        request: Request<pb::TaskIdRequest>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        let owner = self.owner(&request)?;
        let id = id_of(&request.into_inner().id)?;
        let task = self.blocking(move |a| a.get(&owner, &id)).await?;
        Ok(Response::new(pb::CountResponse { count: task.firings }))
    }

    async fn get_workflow_count(
        &self,
        request: Request<pb::WorkflowCountRequest>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        let owner = self.owner(&request)?;
        let count = self.blocking(move |a| a.workflow_count(&owner)).await?;
        Ok(Response::new(pb::CountResponse { count }))
    }

    async fn trigger_task(
        &self,
        request: Request<pb::TaskIdRequest>,
    ) -> Result<Response<pb::AutomationTask>, Status> {
        let owner = self.owner(&request)?;
        let id = id_of(&request.into_inner().id)?;
        Ok(Response::new(self.blocking(move |a| a.trigger(&owner, &id, now_ms())).await?))
    }

    type SyncMessagesStream =
        tonic::codegen::tokio_stream::wrappers::ReceiverStream<Result<pb::SyncMessage, Status>>;

    async fn sync_messages(
        &self,
        request: Request<pb::SyncMessagesRequest>,
    ) -> Result<Response<Self::SyncMessagesStream>, Status> {
        let operator = self.owner(&request)?;
        let permit = Arc::clone(&self.streams).try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!("{MAX_SYNC_STREAMS} change streams are open"))
        })?;
        let asked = request.into_inner().from_sequence;
        let (from, (oldest, _)) = self
            .blocking(move |a| {
                let from = if asked == 0 { a.acked(&operator)? + 1 } else { asked };
                Ok((from, a.log_bounds()?))
            })
            .await?;
        if from < oldest {
            return Err(Status::out_of_range(format!(
                "changes before {oldest} left the log; follow from {oldest} after reading the \
                 table with ListTasks"
            )));
        }
        let (sink, rx) = tokio::sync::mpsc::channel(64);
        let automation = Arc::clone(&self.automation);
        tokio::spawn(async move {
            crate::automation::stream::serve(automation, from, sink).await;
            drop(permit);
        });
        Ok(Response::new(tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn ack(
        &self,
        request: Request<pb::AckRequest>,
    ) -> Result<Response<pb::AckResponse>, Status> {
        let operator = self.owner(&request)?;
        let sequence = request.into_inner().sequence;
        let acked = self.blocking(move |a| a.ack(&operator, sequence)).await?;
        Ok(Response::new(pb::AckResponse { acked }))
    }

    async fn delete_task(
        &self,
        request: Request<pb::TaskIdRequest>,
    ) -> Result<Response<pb::DeleteTaskResponse>, Status> {
        let owner = self.owner(&request)?;
        let id = id_of(&request.into_inner().id)?;
        self.blocking(move |a| a.delete(&owner, &id, now_ms())).await?;
        Ok(Response::new(pb::DeleteTaskResponse {}))
    }
}
