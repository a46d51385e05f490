import ArgumentParser
import Foundation
import Zoo

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the catalog's architectures with their parameter counts.")

    func run() throws {
        try runReportingErrors {
            var rows: [[String]] = [["Name", "Input", "Classes", "Params", "Description"]]
            for e in Catalog.entries {
                let g = try Catalog.graph(e.name)
                rows.append([e.name, ShapeFormat.string(e.defaultInputShape), String(e.defaultClasses),
                             ModelSummary.grouped(g.parameterCount), e.summary])
            }
            var widths = [Int](repeating: 0, count: 5)
            for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
            for r in rows {
                var line = ""
                for (i, c) in r.enumerated() {
                    let pad = String(repeating: " ", count: widths[i] - c.count)
                    line += (i == 2 || i == 3) ? pad + c : (i == 4 ? c : c + pad)
                    if i < 4 { line += "  " }
                }
                say(line)
            }
        }
    }
}
