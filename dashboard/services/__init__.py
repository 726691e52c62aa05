"""Work shared by pages and the CLI that is not a library concern: the tumour-board report and its
PDF, PACS pulls into the store, subgroup audit reports, plain-language summaries.

Never imports Streamlit.
"""
