import ArgumentParser
import Formats
import Zoo

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert between zoo .h5 checkpoints, Keras .h5 models and safetensors (input format detected from content).")

    @Argument(help: "Input model file: zoo .h5, Keras full-model .h5 or safetensors.")
    var input: String

    @Argument(help: "Output file. Format from --to, else from the extension (.safetensors, anything else a zoo .h5).")
    var output: String

    @Option(help: "Architecture (catalog name or spec JSON) for a safetensors input without one.")
    var arch: String?

    @Option(help: "Output format: zoo, keras or safetensors.")
    var to: String?

    func run() throws {
        try runReportingErrors {
            for line in try ModelFiles.convert(input: input, output: output, to: to, arch: arch) { say(line) }
        }
    }
}
