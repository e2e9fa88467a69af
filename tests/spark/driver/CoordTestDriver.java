import java.io.FileWriter;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * A JVM application for the standalone cluster tests: a real driver a real worker runs.
 *
 * It takes the coordinator's standard arguments (--partition, --input, --output DATASET=LOCATION)
 * and its own: --sleep-s SECONDS (stay running that long) and --fail MESSAGE (throw). For every
 * --output it appends a result line to the file named by the spark.coord.resultFile property,
 * which the master hands the driver as a system property.
 */
public class CoordTestDriver {
  public static void main(String[] args) throws Exception {
    List<String> outputs = new ArrayList<>();
    String partition = null;
    String failure = null;
    long sleepMs = 0;
    for (int i = 0; i + 1 < args.length; i += 2) {
      switch (args[i]) {
        case "--output": outputs.add(args[i + 1]); break;
        case "--partition": partition = args[i + 1]; break;
        case "--sleep-s": sleepMs = (long) (Double.parseDouble(args[i + 1]) * 1000); break;
        case "--fail": failure = args[i + 1]; break;
        default: break;
      }
    }
    System.out.println("coord test driver: partition " + partition + ", outputs " + outputs);
    Thread.sleep(sleepMs);
    if (failure != null) {
      throw new IllegalStateException(failure);
    }
    String resultFile = System.getProperty("spark.coord.resultFile");
    if (resultFile == null) {
      throw new IllegalStateException("no spark.coord.resultFile property");
    }
    try (FileWriter out = new FileWriter(resultFile, true)) {
      for (String pair : outputs) {
        int eq = pair.indexOf('=');
        out.write("{\"dataset\": \"" + json(pair.substring(0, eq)) + "\", \"location\": \""
            + json(pair.substring(eq + 1)) + "\", \"row_count\": 3, \"columns\": null, \"attributes\": "
            + "{\"driver\": \"cluster\"}}\n");
      }
    }
  }

  private static String json(String text) {
    return text.replace("\\", "\\\\").replace("\"", "\\\"");
  }
}
