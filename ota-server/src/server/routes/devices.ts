import { AppReport, BoardName, UpdateReport, UpdateStateSchema } from '@edge/formats';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { CheckInRecord, DeviceSummary } from '../../fleet/store.js';
import { errors } from '../errors.js';
import { requireOperator } from '../operator-auth.js';

const DeviceQuery = Type.Object({
  board: Type.Optional(BoardName),
  state: Type.Optional(UpdateStateSchema),
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  cursor: Type.Optional(Type.String({ maxLength: 256 })),
});
const DeviceParams = Type.Object({ id: Type.String({ maxLength: 128 }) });

const CheckInJson = Type.Object({
  at: Type.String(),
  slot: Type.String(),
  firmwareHash: Type.String(),
  version: Type.String(),
  update: UpdateReport,
  desiredVersion: Type.Union([Type.Null(), Type.String()]),
  /** The app release the device runs and installs, when it reports one. */
  app: Type.Optional(AppReport),
});
const DeviceJson = Type.Object({
  deviceId: Type.String(),
  board: Type.String(),
  enrolledAt: Type.String(),
  lastCheckIn: Type.Union([Type.Null(), CheckInJson]),
});
const DeviceDetailJson = Type.Object({
  ...DeviceJson.properties,
  checkIns: Type.Array(CheckInJson),
  uplinks: Type.Array(
    Type.Object({ at: Type.String(), module: Type.String(), payload: Type.Unknown() }),
  ),
});

function checkInJson(checkIn: CheckInRecord): Static<typeof CheckInJson> {
  return { ...checkIn, at: checkIn.at.toISOString() };
}

function deviceJson(device: DeviceSummary): Static<typeof DeviceJson> {
  return {
    deviceId: device.deviceId,
    board: device.board,
    enrolledAt: device.enrolledAt.toISOString(),
    lastCheckIn: device.lastCheckIn && checkInJson(device.lastCheckIn),
  };
}

/** An opaque cursor: the last device id of a page. */
function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (id === '' || Buffer.from(id).toString('base64url') !== cursor) throw errors.badCursor();
  return id;
}

/** The fleet as the operator sees it: devices by board and update state, one device's history. */
export const devicesRoutes: FastifyPluginAsync = async (app) => {
  requireOperator(app);

  app.get<{ Querystring: Static<typeof DeviceQuery> }>(
    '/api/v1/devices',
    {
      schema: {
        querystring: DeviceQuery,
        response: {
          200: Type.Object({
            devices: Type.Array(DeviceJson),
            nextCursor: Type.Union([Type.Null(), Type.String()]),
          }),
        },
      },
    },
    async (request) => {
      const { board, state, limit, cursor } = request.query;
      const devices = await app.fleet.listDevices({
        board,
        state,
        limit,
        afterDeviceId: cursor === undefined ? undefined : decodeCursor(cursor),
      });
      const last = devices.at(-1);
      return {
        devices: devices.map(deviceJson),
        nextCursor:
          devices.length === limit && last
            ? Buffer.from(last.deviceId).toString('base64url')
            : null,
      };
    },
  );

  app.get<{ Params: Static<typeof DeviceParams> }>(
    '/api/v1/devices/:id',
    { schema: { params: DeviceParams, response: { 200: DeviceDetailJson } } },
    async (request) => {
      const device = await app.fleet.device(request.params.id, app.serverConfig.historyLimit);
      if (!device) throw errors.deviceNotFound(request.params.id);
      return {
        ...deviceJson(device),
        checkIns: device.checkIns.map(checkInJson),
        uplinks: device.uplinks.map((uplink) => ({ ...uplink, at: uplink.at.toISOString() })),
      };
    },
  );
};
