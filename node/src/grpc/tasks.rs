//! `TaskService` (proto/node.proto): performers submit signed AVS task results; clients read
//! tasks and follow them to finality (`crate::avs` holds them).
//!
//! A submission costs one pairing when it is new and well formed: `AvsTasks::submit` bounds
//! clients' submissions by a signature budget (global and per performer key) taken only after
//! the cheap checks, for gRPC and JSON-RPC alike.

use std::sync::Arc;

use avs_consensus::types::{SignedTaskMessage, TaskMessage};
use avs_proto::v1 as pb;
use avs_proto::v1::task_service_server::TaskService;
use tokio::sync::{broadcast, mpsc};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::avs::{AvsTasks, ListFilter, Origin, SubmitError, TaskStatus, TaskView};

use crate::avs::{DEFAULT_PAGE, MAX_PAGE};
/// Tasks queued for one `SubscribeTasks` subscriber.
const SUBSCRIBER_BACKLOG: usize = 64;

pub struct Tasks {
    avs: Arc<AvsTasks>,
}

impl Tasks {
    pub fn new(avs: Arc<AvsTasks>) -> Self {
        Self { avs }
    }
}

fn bytes<const N: usize>(
    name: &str,
    raw: Vec<u8>,
) -> Result<ssz_rs::prelude::Vector<u8, N>, Status> {
    let len = raw.len();
    raw.try_into()
        .map_err(|_| Status::invalid_argument(format!("{name} must be {N} bytes, not {len}")))
}

fn list<const N: usize>(name: &str, raw: Vec<u8>) -> Result<ssz_rs::prelude::List<u8, N>, Status> {
    let len = raw.len();
    raw.try_into()
        .map_err(|_| Status::invalid_argument(format!("{name} is {len} bytes; the limit is {N}")))
}

/// The protobuf submission as the SSZ message; out-of-range fields are refused.
pub fn submission_from_proto(r: pb::SubmitTaskRequest) -> Result<SignedTaskMessage, Status> {
    let id = u16::try_from(r.task_definition_id)
        .map_err(|_| Status::invalid_argument("task_definition_id does not fit 16 bits"))?;
    Ok(SignedTaskMessage {
        message: TaskMessage {
            task_definition_id: id,
            performer: bytes("performer", r.performer)?,
            proof_of_task: list("proof_of_task", r.proof_of_task)?,
            data: list("data", r.data)?,
        },
        signature: bytes("signature", r.signature)?,
    })
}

/// The protobuf form of a submission (for clients).
pub fn submission_to_proto(signed: &SignedTaskMessage) -> pb::SubmitTaskRequest {
    let m = &signed.message;
    pb::SubmitTaskRequest {
        task_definition_id: u32::from(m.task_definition_id),
        performer: m.performer.to_vec(),
        proof_of_task: m.proof_of_task.to_vec(),
        data: m.data.to_vec(),
        signature: signed.signature.to_vec(),
    }
}

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text.strip_prefix("0x").unwrap_or(text)).unwrap_or_default()
}

pub fn task_to_proto(view: &TaskView) -> pb::Task {
    let (reason, height, block_root, certificate_ssz) = match &view.status {
        TaskStatus::Pending => (String::new(), 0, Vec::new(), Vec::new()),
        TaskStatus::Included { height } => (String::new(), height.get(), Vec::new(), Vec::new()),
        TaskStatus::Finalized { height, block_root, certificate } => {
            (String::new(), height.get(), unhex(block_root), unhex(certificate))
        }
        TaskStatus::Rejected { reason } => (reason.clone(), 0, Vec::new(), Vec::new()),
    };
    pb::Task {
        task_id: unhex(&view.task_id),
        task_definition_id: u32::from(view.task_definition_id),
        task_name: view.task_name.clone(),
        performer: unhex(&view.performer),
        performer_address: unhex(&view.performer_address),
        proof_of_task: unhex(&view.proof_of_task),
        data: unhex(&view.data),
        signature: unhex(&view.signature),
        received_ms: view.received_ms,
        status: view.status.name().into(),
        reason,
        height,
        block_root,
        certificate_ssz,
    }
}

fn submit_status(e: &SubmitError) -> Status {
    match e {
        SubmitError::Malformed(_)
        | SubmitError::UnknownDefinition(_)
        | SubmitError::BadSignature => Status::invalid_argument(e.to_string()),
        SubmitError::NotMember => Status::permission_denied(e.to_string()),
        SubmitError::Full(_) | SubmitError::Busy(_) => Status::resource_exhausted(e.to_string()),
        SubmitError::Store(_) => Status::unavailable(e.to_string()),
    }
}

#[tonic::async_trait]
impl TaskService for Tasks {
    async fn submit_task(
        &self,
        request: Request<pb::SubmitTaskRequest>,
    ) -> Result<Response<pb::SubmitTaskResponse>, Status> {
        let signed = submission_from_proto(request.into_inner())?;
        let avs = Arc::clone(&self.avs);
        let submitted = tokio::task::spawn_blocking(move || {
            avs.submit(signed, Origin::Client, crate::node::now_ms())
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| submit_status(&e))?;
        let reason = match &submitted.status {
            TaskStatus::Rejected { reason } => reason.clone(),
            _ => String::new(),
        };
        Ok(Response::new(pb::SubmitTaskResponse {
            task_id: submitted.task_id.to_vec(),
            new: submitted.new,
            status: submitted.status.name().into(),
            reason,
        }))
    }

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let id: [u8; 32] = request
            .into_inner()
            .task_id
            .try_into()
            .map_err(|_| Status::invalid_argument("task_id must be 32 bytes"))?;
        let avs = Arc::clone(&self.avs);
        let view = tokio::task::spawn_blocking(move || avs.get(&id))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .ok_or_else(|| Status::not_found("no such task on this node"))?;
        Ok(Response::new(task_to_proto(&view)))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let r = request.into_inner();
        let limit = match r.page_size as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let task_definition_id = r
            .task_definition_id
            .map(u16::try_from)
            .transpose()
            .map_err(|_| Status::invalid_argument("task_definition_id does not fit 16 bits"))?;
        let status = (!r.status.is_empty()).then_some(r.status.as_str());
        let filter = ListFilter::parse(task_definition_id, status, &r.page_token, limit)
            .map_err(Status::invalid_argument)?;
        let (tasks, next_page_token) = self.avs.page(&filter);
        Ok(Response::new(pb::ListTasksResponse {
            tasks: tasks.iter().map(task_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn list_task_definitions(
        &self,
        _: Request<pb::ListTaskDefinitionsRequest>,
    ) -> Result<Response<pb::ListTaskDefinitionsResponse>, Status> {
        let definitions = self
            .avs
            .definitions()
            .into_iter()
            .map(|(id, name, validation)| pb::TaskDefinition {
                id: u32::from(id),
                name,
                validation: validation.into(),
            })
            .collect();
        Ok(Response::new(pb::ListTaskDefinitionsResponse { definitions }))
    }

    type SubscribeTasksStream = ReceiverStream<Result<pb::Task, Status>>;

    async fn subscribe_tasks(
        &self,
        request: Request<pb::SubscribeTasksRequest>,
    ) -> Result<Response<Self::SubscribeTasksStream>, Status> {
        let only = request.into_inner().task_definition_id;
        let mut live = self.avs.subscribe();
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BACKLOG);
        tokio::spawn(async move {
            loop {
                let item = match live.recv().await {
                    Ok(view) => view,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "{missed} finalized tasks were not read in time; resubscribe \
                                 and catch up with ListTasks"
                            ))))
                            .await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if only.is_some_and(|d| d != u32::from(item.task_definition_id)) {
                    continue;
                }
                // A subscriber that stops reading fills its backlog and is dropped.
                if tx.try_send(Ok(task_to_proto(&item))).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
