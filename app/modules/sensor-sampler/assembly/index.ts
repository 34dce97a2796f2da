// Samples the board's first temperature sensor and uplinks it:
// {"sensor":"hwmon0/temp1","milliCelsius":N}.
import {
  EDGE_EINVAL,
  EDGE_OK,
  JsonObject,
  LOG_DEBUG,
  LOG_ERROR,
  errorName,
  log,
  parseInteger,
  postUplink,
  readSensor,
} from '../../../sdk/assembly/index';

const SENSOR_PATH = '/sys/class/hwmon/hwmon0/temp1_input';
const SENSOR_NAME = 'hwmon0/temp1';

/** Reads the sensor once and uplinks its value. Returns 0, or the negative error code met. */
export function sample(): i32 {
  const reading = readSensor(SENSOR_PATH, 64);
  if (!reading.ok) {
    log(LOG_ERROR, 'cannot read ' + SENSOR_PATH + ': ' + errorName(reading.error));
    return reading.error;
  }
  const milliCelsius = parseInteger(reading.text);
  if (!milliCelsius.ok) {
    log(LOG_ERROR, SENSOR_PATH + ' is not a number: ' + reading.text.trimEnd());
    return EDGE_EINVAL;
  }
  const payload = new JsonObject()
    .string('sensor', SENSOR_NAME)
    .integer('milliCelsius', milliCelsius.value)
    .toString();
  const sent = postUplink(payload);
  if (sent != EDGE_OK) {
    log(LOG_ERROR, 'uplink refused: ' + errorName(sent));
    return sent;
  }
  log(LOG_DEBUG, 'uplinked ' + payload);
  return EDGE_OK;
}
