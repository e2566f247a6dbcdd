// Test preload (node --import): the CLI child's clock runs FAKE_CLOCK_OFFSET_MS ahead, in step with the emulator
// clock a test moved through POST /_emulator/clock. Time passing is simulated on both sides; dropkey's own code is
// unchanged (it reads Date.now like in production).
const offset = Number(process.env.FAKE_CLOCK_OFFSET_MS ?? 0);
if (offset) {
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  class ShiftedDate extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(realNow() + offset);
      else super(...args);
    }
    static now() {
      return realNow() + offset;
    }
  }
  globalThis.Date = ShiftedDate;
}
