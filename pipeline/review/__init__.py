"""The review pages: what they show (model), gathered from a book (collect), drawn as HTML (render),
and the marks they export, read back for retakes (marks)."""
