"""`python -m analysis NAME`: R1's tables and figures regenerated from run records; never trains.

Tables (table1, table2, table3, table6, pareto) print Markdown and write .md, .tex and .csv; figures (fig1, fig4, fig6,
fig7, pareto) write .png and .pdf; `report` makes all of them and one page that links them. Run folders are read only
through `resablate.records`; what a table or figure cannot show (no runs, failed runs) is said in its notes.
"""
