// The front service of the thrift-rpc-integration example. Plain application
// IDL: no transaction field anywhere.
namespace cpp txc.shop

exception Rejected {
  1: string message,
}

service Shop {
  // Reserves `quantity` x `item` and charges `price` to `account`, both or
  // neither. Returns the global transaction id.
  string buy(1: string account, 2: string item, 3: i32 quantity, 4: i64 price)
      throws (1: Rejected rejected),
}
