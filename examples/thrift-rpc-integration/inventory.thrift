// A downstream service of the thrift-rpc-integration example. No transaction
// field: the transaction travels in a Thrift header.
namespace cpp txc.shop

exception OutOfStock {
  1: string message,
}

service Inventory {
  void reserve(1: string item, 2: i32 quantity) throws (1: OutOfStock out_of_stock),
  i32 available(1: string item),
}
