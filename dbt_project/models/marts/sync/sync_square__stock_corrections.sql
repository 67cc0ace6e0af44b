{{ stock_corrections_for('square') }}
