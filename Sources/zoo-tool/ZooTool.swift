import ArgumentParser
import Foundation
import Zoo

@main
struct ZooTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zoo-tool",
        abstract: "CNN model zoo: architectures, summaries, inference and checkpoint interchange.",
        subcommands: [List.self, Summary.self, Infer.self, Convert.self, Verify.self, Train.self, Finetune.self, Eval.self, Bench.self])
}

/// Runs a subcommand body; any error is printed as `error: <description>` on stderr and the
/// process exits with status 1 (no stack trace).
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as ZooError {
        printError(e.description)
        throw ExitCode(1)
    } catch let e as CustomStringConvertible {
        printError(e.description)
        throw ExitCode(1)
    } catch {
        printError("\(error)")
        throw ExitCode(1)
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data(("error: " + message + "\n").utf8))
}

/// Standard output, flushed line by line.
func say(_ s: String) {
    FileHandle.standardOutput.write(Data((s.hasSuffix("\n") ? s : s + "\n").utf8))
}

/// Parses "1x3x224x224" (batch first) against an architecture's input rank.
func parseInputOption(_ text: String, like inputShape: [Int]) throws -> (batch: Int, shape: [Int]) {
    let rank = inputShape.count
    guard let dims = ShapeFormat.parse(text) else {
        throw ZooError.badInput("--input \(text): expected dimensions like 1x3x224x224")
    }
    if dims.count == rank + 1 { return (dims[0], Array(dims.dropFirst())) }
    throw ZooError.badInput("--input \(text): the model takes a rank-\(rank + 1) input, batch first, like \(ShapeFormat.string([1] + inputShape))")
}
