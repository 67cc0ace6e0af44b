{{ stock_corrections_for('shopify') }}
