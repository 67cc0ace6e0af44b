{{ stock_corrections_for('amazon') }}
