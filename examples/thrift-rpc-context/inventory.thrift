// The example's own application-level service. It knows nothing of the
// coordinator: the global transaction travels in `txn_context`, a string made
// by txc::participant::EncodeTxnContext (participant-sdk/.../context.h).
namespace cpp txc.example

struct ReserveRequest {
  1: string txn_context,   // encoded wire::TxnContext; empty: no global transaction
  2: string item,
  3: i32 quantity,
}

struct ReserveReply {
  1: bool enlisted,        // the service joined the global transaction as a branch
  2: string branch_id,
  3: string message,
}

exception BadRequest {
  1: string message,
}

service Inventory {
  ReserveReply reserve(1: ReserveRequest req) throws (1: BadRequest bad),
  i32 available(1: string item),
}
