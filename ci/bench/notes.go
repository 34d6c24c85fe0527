package main

// Analysis written after looking at the numbers (rendered into docs/benchmarks.md). The targets
// table is computed; these texts explain misses and what would close them.

// missNotes explains a missed target (by target ID) and what would close it.
var missNotes = map[string]string{}

// analysisNotes follows the data-path tables.
const analysisNotes = ``

// clusterNotes follows the cluster table.
const clusterNotes = ``
