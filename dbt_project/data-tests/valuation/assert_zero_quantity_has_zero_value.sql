-- DESIGN §7 rule 3: a position whose quantity is exactly zero has exactly zero value, by both methods.
select movement_id, method, balance_quantity, balance_value
from {{ ref('fct_inventory_valuation') }}
where balance_quantity = 0 and balance_value <> 0
