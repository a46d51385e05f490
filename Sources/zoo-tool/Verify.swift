import ArgumentParser
import Formats
import Zoo

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a model file (checksums, shapes, finite values, one forward pass), or compare two files' outputs.")

    @Argument(help: "Model file: zoo .h5, Keras .h5 or safetensors.")
    var file: String

    @Option(help: "Second model file: compare outputs on seeded random inputs.")
    var against: String?

    @Option(help: "Largest accepted relative error max|Δ| / max(1, max|y|) with --against.")
    var tolerance: Float = 1e-4

    @Option(help: "Architecture (catalog name or spec JSON) for safetensors files without one.")
    var arch: String?

    func run() throws {
        try runReportingErrors {
            guard let against else {
                for line in try ModelVerify.verify(path: file, arch: arch) { say(line) }
                return
            }
            let c = try ModelVerify.compare(file, against: against, arch: arch)
            for line in c.lines { say(line) }
            guard c.maxRel <= tolerance else {
                throw ZooError.badInput("outputs differ beyond tolerance: relative error \(c.maxRel) > \(tolerance)")
            }
            say("OK (within tolerance \(tolerance))")
        }
    }
}
