local eddy = require "eddy"
return {
  eddy.event { type = "Order", version = 1, owner = "bench",
    schema = { type = "object", required = { "id", "customer", "total", "items" },
      properties = {
        id = { type = "integer", minimum = 1 },
        customer = { type = "string", minLength = 1 },
        total = { type = "number", minimum = 0 },
        currency = { enum = { "EUR", "USD" } },
        items = { type = "array", minItems = 1, items = { type = "object", required = { "sku", "qty" },
                  properties = { sku = { type = "string" }, qty = { type = "integer", minimum = 1 } } } },
        note = { type = "string", maxLength = 1000 },
      } } },
  eddy.event { type = "OrderCounted", version = 1, owner = "bench",
    schema = { type = "object", required = { "id", "n" },
               properties = { id = { type = "integer" }, n = { type = "integer", minimum = 1 } } } },
}
