// A downstream service of the thrift-rpc-integration example. No transaction
// field: the transaction travels in a Thrift header.
namespace cpp txc.shop

exception PaymentRefused {
  1: string message,
}

service Payment {
  void charge(1: string account, 2: i64 amount) throws (1: PaymentRefused refused),
  i64 balance(1: string account),
}
