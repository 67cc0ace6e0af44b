{{ stock_corrections_for('toast') }}
