{{ stock_corrections_for('shiphero') }}
